-- 0006: the address a run's agent said hello from (seen by the server, not
-- reported by the agent): the only host a held run's SSH tunnel dials.
ALTER TABLE vet_runs ADD COLUMN agent_source TEXT NOT NULL DEFAULT '';
