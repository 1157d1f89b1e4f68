-- 0003: what a host boots with the "kernel" profile (and its overrides of the
-- site's vet and diskless images): kernel and initrd (a path below the HTTP
-- boot files root or an http(s) URL) and the kernel command line.

ALTER TABLE hosts ADD COLUMN kernel  TEXT NOT NULL DEFAULT '';
ALTER TABLE hosts ADD COLUMN initrd  TEXT NOT NULL DEFAULT '';
ALTER TABLE hosts ADD COLUMN cmdline TEXT NOT NULL DEFAULT '';

-- Checking a new host's name against other hosts' aliases reads only the
-- hosts that have aliases (enrolled machines have none).
CREATE INDEX hosts_aliased ON hosts (id) WHERE aliases <> '';
