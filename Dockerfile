# The Airflow image with this project's pinned runtime set (requirements.txt).
FROM apache/airflow:3.3.2-python3.11
COPY requirements.txt /requirements.txt
RUN pip install --no-cache-dir -r /requirements.txt
