-- 0008: diskless hosts over NFS. A host names its root image ("name" for
-- the promoted version, "name@N" for version N) and its home export; empty
-- means the role's default from the config (provisioning.nfs.roles). Root
-- images are versioned directory trees on the data partition: a row exists
-- only for a version whose files are complete, and at most one version of a
-- name is promoted (what hosts naming the image boot).

ALTER TABLE hosts ADD COLUMN root_image TEXT NOT NULL DEFAULT '';
ALTER TABLE hosts ADD COLUMN home       TEXT NOT NULL DEFAULT '';

CREATE TABLE root_images (
    name        TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    promoted    INTEGER NOT NULL DEFAULT 0,
    size_bytes  BIGINT  NOT NULL,
    files       BIGINT  NOT NULL,
    source      TEXT    NOT NULL DEFAULT '',
    created_ms  BIGINT  NOT NULL,
    promoted_ms BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (name, version)
);
CREATE UNIQUE INDEX root_images_promoted ON root_images (name) WHERE promoted = 1;

-- When the kernel last asked about each host's use of each export (the nfs
-- service records nfsd.export upcalls): a root image version a client used
-- recently is in use, and removing it would pull the files from under a
-- running machine.
CREATE TABLE nfs_usage (
    host    TEXT   NOT NULL,
    export  TEXT   NOT NULL,
    seen_ms BIGINT NOT NULL,
    PRIMARY KEY (host, export)
);
