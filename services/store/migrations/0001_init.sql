-- 0001: hosts, their MACs, DHCP leases, boot events, change counter.
-- Times are integer milliseconds since the Unix epoch (UTC).

CREATE TABLE hosts (
    id               INTEGER PRIMARY KEY,
    name             TEXT    NOT NULL UNIQUE,
    role             TEXT    NOT NULL DEFAULT '',
    boot_profile     TEXT    NOT NULL DEFAULT 'local',
    reserved_ipv4    TEXT    UNIQUE,
    aliases          TEXT    NOT NULL DEFAULT '',
    expected_spec    TEXT    NOT NULL DEFAULT '',
    wol_mac          TEXT    NOT NULL DEFAULT '',
    switch_port      TEXT    NOT NULL DEFAULT '',
    opt82_circuit_id TEXT    NOT NULL DEFAULT '',
    opt82_remote_id  TEXT    NOT NULL DEFAULT '',
    ipxe_binary      TEXT    NOT NULL DEFAULT '',
    token            TEXT    NOT NULL UNIQUE,
    created_ms       BIGINT  NOT NULL,
    updated_ms       BIGINT  NOT NULL
);

CREATE TABLE host_macs (
    mac      TEXT    PRIMARY KEY,
    host_id  INTEGER NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    position INTEGER NOT NULL
);
CREATE INDEX host_macs_host ON host_macs (host_id);

CREATE TABLE leases (
    ip         TEXT   PRIMARY KEY,
    subnet     TEXT   NOT NULL,
    mac        TEXT,
    hostname   TEXT   NOT NULL DEFAULT '',
    client_id  TEXT   NOT NULL DEFAULT '',
    relay_info TEXT   NOT NULL DEFAULT '',
    state      TEXT   NOT NULL,
    expires_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);
CREATE UNIQUE INDEX leases_subnet_mac ON leases (subnet, mac);

CREATE TABLE boot_events (
    id      INTEGER PRIMARY KEY,
    mac     TEXT   NOT NULL,
    host    TEXT   NOT NULL DEFAULT '',
    kind    TEXT   NOT NULL,
    detail  TEXT   NOT NULL DEFAULT '',
    time_ms BIGINT NOT NULL
);
CREATE INDEX boot_events_mac_time ON boot_events (mac, time_ms);

CREATE TABLE kiln_meta (
    key   TEXT   PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO kiln_meta (key, value) VALUES ('data_version', 0);
