-- 0005: iSCSI thin nodes. A host's initiator (its IQN and CHAP credentials,
-- the secrets sealed with the key on the data partition, never in clear
-- text) and volumes (sparse files on the data partition exported by the
-- iscsi service). A volume without a host is a golden volume, a source
-- for clones.

CREATE TABLE iscsi_initiators (
    host_id       INTEGER PRIMARY KEY REFERENCES hosts (id) ON DELETE CASCADE,
    iqn           TEXT    NOT NULL UNIQUE,
    chap_user     TEXT    NOT NULL,
    chap_sealed   TEXT    NOT NULL,
    mutual_user   TEXT    NOT NULL DEFAULT '',
    mutual_sealed TEXT    NOT NULL DEFAULT '',
    updated_ms    BIGINT  NOT NULL
);

CREATE TABLE iscsi_volumes (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    host_id    INTEGER REFERENCES hosts (id) ON DELETE RESTRICT,
    size_bytes BIGINT  NOT NULL,
    source     TEXT    NOT NULL DEFAULT '',
    created_ms BIGINT  NOT NULL,
    updated_ms BIGINT  NOT NULL,
    UNIQUE (host_id, name)
);
CREATE UNIQUE INDEX iscsi_volumes_golden ON iscsi_volumes (name) WHERE host_id IS NULL;
