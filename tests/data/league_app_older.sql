-- An older state of the league app's schema (../shared/app/README.md): series tied to leagues by
-- a link table instead of a column, display names required on series and teams, and triggers
-- that set updated_at. The tests turn a database of the current schema into it, rows and all.
CREATE TABLE public.series_leagues (
    id serial PRIMARY KEY,
    series_id integer NOT NULL REFERENCES public.series (id),
    league_id integer NOT NULL REFERENCES public.leagues (id),
    created_at timestamp with time zone,
    CONSTRAINT unique_series_league UNIQUE (series_id, league_id)
);
INSERT INTO public.series_leagues (series_id, league_id, created_at) SELECT id, league_id, now() FROM public.series;
ALTER TABLE public.series DROP CONSTRAINT uq_series_league_name;
ALTER TABLE public.series DROP COLUMN league_id;
ALTER TABLE public.series ADD COLUMN display_name character varying(255);
UPDATE public.series SET display_name = name;
ALTER TABLE public.series ALTER COLUMN display_name SET NOT NULL;
ALTER TABLE public.series ADD CONSTRAINT series_name_key UNIQUE (name);
ALTER TABLE public.teams ADD COLUMN display_name character varying(255);
UPDATE public.teams SET display_name = team_name;
ALTER TABLE public.teams ALTER COLUMN display_name SET NOT NULL;
CREATE FUNCTION public.set_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END $$;
CREATE TRIGGER teams_set_updated_at BEFORE UPDATE ON public.teams
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER series_set_updated_at BEFORE UPDATE ON public.series
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
