-- Shared budget pools (issue 10): pool state, leases, events; halts are NOTIFYed.
-- Amounts are integers: cost in picodollars (USD * 10^12), the lease fraction in ppm.

CREATE SCHEMA IF NOT EXISTS haltgate;

DO $$
BEGIN
    -- Members lease, settle and halt; only admins lift (see the trigger below).
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'haltgate_pool_member') THEN
        CREATE ROLE haltgate_pool_member NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'haltgate_pool_admin') THEN
        CREATE ROLE haltgate_pool_admin NOLOGIN;
    END IF;
END
$$;

CREATE TABLE haltgate.pools (
    pool text PRIMARY KEY,  -- "<namespace>/<name>" of the BudgetPool
    calls_limit bigint CHECK (calls_limit >= 0),
    calls_used bigint NOT NULL DEFAULT 0,
    calls_leased bigint NOT NULL DEFAULT 0 CHECK (calls_leased >= 0),
    calls_period text NOT NULL DEFAULT 'run' CHECK (calls_period IN ('run', 'hour', 'day')),
    calls_period_start timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    tokens_limit bigint CHECK (tokens_limit >= 0),
    tokens_used bigint NOT NULL DEFAULT 0,
    tokens_leased bigint NOT NULL DEFAULT 0 CHECK (tokens_leased >= 0),
    tokens_period text NOT NULL DEFAULT 'run' CHECK (tokens_period IN ('run', 'hour', 'day')),
    tokens_period_start timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    input_tokens_limit bigint CHECK (input_tokens_limit >= 0),
    input_tokens_used bigint NOT NULL DEFAULT 0,
    input_tokens_leased bigint NOT NULL DEFAULT 0 CHECK (input_tokens_leased >= 0),
    input_tokens_period text NOT NULL DEFAULT 'run' CHECK (input_tokens_period IN ('run', 'hour', 'day')),
    input_tokens_period_start timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    output_tokens_limit bigint CHECK (output_tokens_limit >= 0),
    output_tokens_used bigint NOT NULL DEFAULT 0,
    output_tokens_leased bigint NOT NULL DEFAULT 0 CHECK (output_tokens_leased >= 0),
    output_tokens_period text NOT NULL DEFAULT 'run' CHECK (output_tokens_period IN ('run', 'hour', 'day')),
    output_tokens_period_start timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    cost_pico_limit bigint CHECK (cost_pico_limit >= 0),
    cost_pico_used bigint NOT NULL DEFAULT 0,
    cost_pico_leased bigint NOT NULL DEFAULT 0 CHECK (cost_pico_leased >= 0),
    cost_pico_period text NOT NULL DEFAULT 'run' CHECK (cost_pico_period IN ('run', 'hour', 'day')),
    cost_pico_period_start timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    lease_ppm integer NOT NULL DEFAULT 100000 CHECK (lease_ppm BETWEEN 1 AND 1000000),
    lease_seconds double precision NOT NULL DEFAULT 30 CHECK (lease_seconds > 0),
    max_chain_depth integer,
    detect_loops boolean NOT NULL DEFAULT true,
    storm_halts integer,
    storm_window_seconds double precision,
    error_storm_errors integer,
    error_storm_window_seconds double precision,
    state text NOT NULL DEFAULT 'Active' CHECK (state IN ('Active', 'Halted')),
    halt_code text,
    halt_reason text,
    halted_by text,
    halted_at timestamptz,
    lifted_at timestamptz,
    lifted_by text,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE haltgate.pool_leases (
    id bigserial PRIMARY KEY,
    pool text NOT NULL REFERENCES haltgate.pools ON DELETE CASCADE,
    holder text NOT NULL,
    calls bigint NOT NULL DEFAULT 0,
    tokens bigint NOT NULL DEFAULT 0,
    input_tokens bigint NOT NULL DEFAULT 0,
    output_tokens bigint NOT NULL DEFAULT 0,
    cost_pico bigint NOT NULL DEFAULT 0,
    granted_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX pool_leases_expiry ON haltgate.pool_leases (pool, expires_at);

-- Append-only history: halts, lifts, member halts, error counts, expired leases.
CREATE TABLE haltgate.pool_events (
    id bigserial PRIMARY KEY,
    pool text NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    kind text NOT NULL,
    actor text NOT NULL DEFAULT session_user,
    code text,
    count integer NOT NULL DEFAULT 1,
    detail jsonb
);
CREATE INDEX pool_events_window ON haltgate.pool_events (pool, kind, at);

-- Start of the current accounting period ('run': never resets).
CREATE FUNCTION haltgate.pool_period_start(period text) RETURNS timestamp
LANGUAGE sql STABLE AS $$
    SELECT CASE period
        WHEN 'hour' THEN date_trunc('hour', now() AT TIME ZONE 'UTC')
        WHEN 'day' THEN date_trunc('day', now() AT TIME ZONE 'UTC')
        ELSE '-infinity'::timestamp END
$$;

-- Halt a pool: state, an event, and a NOTIFY every member listens for (sent at commit).
CREATE FUNCTION haltgate.pool_halt(p_pool text, p_code text, p_reason text, p_actor text)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    UPDATE haltgate.pools
       SET state = 'Halted', halt_code = p_code, halt_reason = p_reason,
           halted_by = p_actor, halted_at = clock_timestamp(), updated_at = clock_timestamp()
     WHERE pool = p_pool AND state = 'Active';
    IF NOT FOUND THEN
        RETURN false;  -- unknown or already halted: the first halt's reason stands
    END IF;
    INSERT INTO haltgate.pool_events (pool, kind, actor, code, detail)
    VALUES (p_pool, 'halt', p_actor, p_code, jsonb_build_object('reason', p_reason));
    PERFORM pg_notify('haltgate_pool', json_build_object(
        'pool', p_pool, 'state', 'Halted', 'code', p_code, 'reason', p_reason)::text);
    RETURN true;
END
$$;

-- Lift a halted pool. Refused (by the trigger) unless the caller is a pool admin.
CREATE FUNCTION haltgate.pool_lift(p_pool text, p_actor text, p_reason text)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    UPDATE haltgate.pools
       SET state = 'Active', halt_code = NULL, halt_reason = NULL, halted_by = NULL,
           halted_at = NULL, lifted_at = clock_timestamp(),
           lifted_by = session_user || ' (' || p_actor || ')', updated_at = clock_timestamp()
     WHERE pool = p_pool AND state = 'Halted';
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO haltgate.pool_events (pool, kind, actor, code, detail)
    VALUES (p_pool, 'lift', session_user, 'pool_lifted',
            jsonb_build_object('as', p_actor, 'reason', p_reason));
    PERFORM pg_notify('haltgate_pool', json_build_object(
        'pool', p_pool, 'state', 'Active', 'code', 'pool_lifted', 'reason', p_reason)::text);
    RETURN true;
END
$$;

CREATE FUNCTION haltgate.pool_guard_lift() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.state = 'Halted' AND NEW.state = 'Active'
       AND NOT pg_has_role(session_user, 'haltgate_pool_admin', 'MEMBER') THEN
        RAISE EXCEPTION 'lifting pool % needs the haltgate_pool_admin role', OLD.pool
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER pool_guard_lift BEFORE UPDATE OF state ON haltgate.pools
    FOR EACH ROW EXECUTE FUNCTION haltgate.pool_guard_lift();

-- Record a member event; member halts and error counts may make a storm that halts the
-- pool. The pool row lock serializes members, so two concurrent reports cannot both miss
-- the threshold. Returns the pool state after the event.
CREATE FUNCTION haltgate.pool_record(p_pool text, p_kind text, p_actor text, p_code text,
                                     p_count integer)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r haltgate.pools;
    threshold integer;
    win double precision;
    seen bigint;
BEGIN
    SELECT * INTO r FROM haltgate.pools WHERE pool = p_pool FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    INSERT INTO haltgate.pool_events (pool, kind, actor, code, count)
    VALUES (p_pool, p_kind, p_actor, p_code, p_count);
    IF p_kind = 'member_halt' THEN
        threshold := r.storm_halts; win := r.storm_window_seconds;
    ELSIF p_kind = 'errors' THEN
        threshold := r.error_storm_errors; win := r.error_storm_window_seconds;
    END IF;
    IF threshold IS NULL OR r.state = 'Halted' THEN
        RETURN r.state;
    END IF;
    -- Events before the last lift do not count: a lifted pool starts a fresh window.
    SELECT coalesce(sum(count), 0) INTO seen FROM haltgate.pool_events
     WHERE pool = p_pool AND kind = p_kind
       AND at > clock_timestamp() - make_interval(secs => win)
       AND at > coalesce(r.lifted_at, '-infinity'::timestamptz);
    IF seen >= threshold THEN
        PERFORM haltgate.pool_halt(
            p_pool,
            CASE p_kind WHEN 'member_halt' THEN 'halt_storm' ELSE 'error_storm' END,
            format('%s %s events within %s s (threshold %s)', seen, p_kind, win, threshold),
            p_actor);
        RETURN 'Halted';
    END IF;
    RETURN r.state;
END
$$;

GRANT USAGE ON SCHEMA haltgate TO haltgate_pool_member, haltgate_pool_admin;
-- Members change spend, leases and (only towards Halted: see the trigger) the state;
-- limits and rules are the admins' (haltgate pool apply, the operator).
GRANT SELECT ON haltgate.pools TO haltgate_pool_member;
GRANT UPDATE (calls_used, calls_leased, calls_period_start, tokens_used,
    tokens_leased, tokens_period_start, input_tokens_used, input_tokens_leased,
    input_tokens_period_start, output_tokens_used, output_tokens_leased,
    output_tokens_period_start, cost_pico_used, cost_pico_leased, cost_pico_period_start,
    state, halt_code, halt_reason, halted_by, halted_at, updated_at)
    ON haltgate.pools TO haltgate_pool_member;
GRANT SELECT, INSERT, UPDATE, DELETE ON haltgate.pool_leases TO haltgate_pool_member;
GRANT SELECT, INSERT ON haltgate.pool_events TO haltgate_pool_member;
GRANT USAGE ON SEQUENCE haltgate.pool_leases_id_seq, haltgate.pool_events_id_seq
    TO haltgate_pool_member;
GRANT haltgate_pool_member TO haltgate_pool_admin;
GRANT INSERT, UPDATE, DELETE ON haltgate.pools TO haltgate_pool_admin;
