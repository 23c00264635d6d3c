-- fleetd's schema on PostgreSQL: the tables of the SQLite store's
-- migrations 0001–0005 in their final shape, with the same columns,
-- constraints and indexes. Values keep the SQLite store's representation so
-- both stores read and write identical data: timestamps are RFC 3339 text
-- in UTC with milliseconds (sorts chronologically as text), JSON documents
-- are text exactly as written (key order preserved), integers are BIGINT,
-- keys are BYTEA. Ids are UUIDv7 text; list pages are ordered by id.

CREATE TABLE device_groups (
    id          TEXT   NOT NULL PRIMARY KEY,
    name        TEXT   NOT NULL,
    description TEXT   NOT NULL DEFAULT '',
    parent_id   TEXT   REFERENCES device_groups (id) ON DELETE RESTRICT,
    tags        TEXT   NOT NULL DEFAULT '{}',
    created_at  TEXT   NOT NULL,
    updated_at  TEXT   NOT NULL,
    version     BIGINT NOT NULL CHECK (version >= 1),
    query       TEXT,
    config      TEXT   NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX device_groups_sibling_name
    ON device_groups (COALESCE(parent_id, ''), name);
CREATE INDEX device_groups_parent ON device_groups (parent_id);

CREATE TABLE audit_log (
    seq            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at             TEXT   NOT NULL,
    actor          TEXT   NOT NULL,
    action         TEXT   NOT NULL CHECK (action IN ('create', 'update', 'delete')),
    object_kind    TEXT   NOT NULL,
    object_id      TEXT   NOT NULL,
    before_version BIGINT,
    after_version  BIGINT,
    detail         TEXT
);
CREATE INDEX audit_log_object ON audit_log (object_kind, object_id, seq);

CREATE TABLE devices (
    id               TEXT   NOT NULL PRIMARY KEY,
    name             TEXT   NOT NULL UNIQUE,
    hardware         TEXT   NOT NULL,
    attributes       TEXT   NOT NULL DEFAULT '{}',
    firmware_version TEXT,
    last_seen        TEXT,
    health           TEXT,
    created_at       TEXT   NOT NULL,
    updated_at       TEXT   NOT NULL,
    version          BIGINT NOT NULL CHECK (version >= 1)
);

CREATE TABLE device_group_members (
    device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    group_id  TEXT NOT NULL REFERENCES device_groups (id) ON DELETE CASCADE,
    PRIMARY KEY (device_id, group_id)
);
CREATE INDEX device_group_members_group ON device_group_members (group_id, device_id);

CREATE TABLE policies (
    id             TEXT   NOT NULL PRIMARY KEY,
    name           TEXT   NOT NULL UNIQUE,
    description    TEXT   NOT NULL DEFAULT '',
    statements     TEXT   NOT NULL,
    policy_version BIGINT NOT NULL CHECK (policy_version >= 1),
    created_at     TEXT   NOT NULL,
    updated_at     TEXT   NOT NULL,
    version        BIGINT NOT NULL CHECK (version >= 1)
);

CREATE TABLE policy_versions (
    policy_id      TEXT   NOT NULL REFERENCES policies (id) ON DELETE CASCADE,
    policy_version BIGINT NOT NULL,
    statements     TEXT   NOT NULL,
    created_at     TEXT   NOT NULL,
    PRIMARY KEY (policy_id, policy_version)
);

CREATE TABLE policy_attachments (
    id             TEXT   NOT NULL PRIMARY KEY,
    policy_id      TEXT   NOT NULL REFERENCES policies (id) ON DELETE RESTRICT,
    group_id       TEXT   REFERENCES device_groups (id) ON DELETE RESTRICT,
    certificate_id TEXT,
    created_at     TEXT   NOT NULL,
    updated_at     TEXT   NOT NULL,
    version        BIGINT NOT NULL CHECK (version >= 1),
    CHECK ((group_id IS NULL) <> (certificate_id IS NULL))
);
CREATE UNIQUE INDEX policy_attachments_group ON policy_attachments (group_id, policy_id)
    WHERE group_id IS NOT NULL;
CREATE UNIQUE INDEX policy_attachments_certificate
    ON policy_attachments (certificate_id, policy_id) WHERE certificate_id IS NOT NULL;
CREATE INDEX policy_attachments_policy ON policy_attachments (policy_id);

CREATE TABLE firmware (
    id                 TEXT   NOT NULL PRIMARY KEY,
    product            TEXT   NOT NULL,
    release_version    TEXT   NOT NULL,
    hardware           TEXT   NOT NULL,
    url                TEXT   NOT NULL,
    sha256             TEXT   NOT NULL,
    size_bytes         BIGINT NOT NULL CHECK (size_bytes > 0),
    signature          TEXT,
    signature_verified BIGINT NOT NULL DEFAULT 0 CHECK (signature_verified IN (0, 1)),
    created_at         TEXT   NOT NULL,
    UNIQUE (product, release_version)
);

CREATE TABLE rollouts (
    id                   TEXT   NOT NULL PRIMARY KEY,
    name                 TEXT   NOT NULL,
    firmware_id          TEXT   NOT NULL REFERENCES firmware (id) ON DELETE RESTRICT,
    target_group_ids     TEXT   NOT NULL,
    phases               TEXT   NOT NULL DEFAULT '[]',
    rate                 TEXT,
    failure_threshold    TEXT   NOT NULL,
    device_timeout       TEXT   NOT NULL,
    max_retries          BIGINT NOT NULL,
    start_at             TEXT,
    maintenance_window   TEXT,
    continuous           BIGINT NOT NULL CHECK (continuous IN (0, 1)),
    state                TEXT   NOT NULL CHECK (state IN ('running', 'paused', 'cancelled')),
    status               TEXT   NOT NULL,
    current_phase        BIGINT NOT NULL DEFAULT 0,
    count_targeted       BIGINT NOT NULL DEFAULT 0,
    count_pending        BIGINT NOT NULL DEFAULT 0,
    count_in_progress    BIGINT NOT NULL DEFAULT 0,
    count_succeeded      BIGINT NOT NULL DEFAULT 0,
    count_failed         BIGINT NOT NULL DEFAULT 0,
    count_rolled_back    BIGINT NOT NULL DEFAULT 0,
    created_at           TEXT   NOT NULL,
    updated_at           TEXT   NOT NULL,
    version              BIGINT NOT NULL CHECK (version >= 1),
    count_cancelled      BIGINT NOT NULL DEFAULT 0,
    count_assigned       BIGINT NOT NULL DEFAULT 0,
    engine_started_at    TEXT,
    engine_cleaned_at    TEXT,
    phase_completed_at   TEXT,
    rate_anchor_at       TEXT,
    rate_anchor_assigned BIGINT NOT NULL DEFAULT 0,
    baseline_succeeded   BIGINT NOT NULL DEFAULT 0,
    baseline_failed      BIGINT NOT NULL DEFAULT 0,
    targets_refreshed_at TEXT
);
CREATE INDEX rollouts_firmware ON rollouts (firmware_id);
CREATE INDEX rollouts_engine_active ON rollouts (id)
    WHERE engine_cleaned_at IS NULL OR count_in_progress > 0;

CREATE TABLE rollout_targets (
    rollout_id TEXT NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
    group_id   TEXT NOT NULL REFERENCES device_groups (id) ON DELETE CASCADE,
    PRIMARY KEY (rollout_id, group_id)
);
CREATE INDEX rollout_targets_group ON rollout_targets (group_id);

CREATE TABLE certificate_authorities (
    id              TEXT   NOT NULL PRIMARY KEY,
    name            TEXT   NOT NULL UNIQUE,
    description     TEXT   NOT NULL DEFAULT '',
    common_name     TEXT   NOT NULL,
    organization    TEXT,
    key_algorithm   TEXT   NOT NULL,
    validity_days   BIGINT NOT NULL,
    imported        BIGINT NOT NULL CHECK (imported IN (0, 1)),
    certificate_pem TEXT   NOT NULL,
    fingerprint     TEXT   NOT NULL,
    serial          TEXT   NOT NULL,
    not_before      TEXT   NOT NULL,
    not_after       TEXT   NOT NULL,
    private_key     BYTEA  NOT NULL,
    master_key_id   TEXT   NOT NULL,
    created_at      TEXT   NOT NULL,
    updated_at      TEXT   NOT NULL,
    version         BIGINT NOT NULL CHECK (version >= 1)
);

CREATE TABLE certificates (
    id                TEXT   NOT NULL PRIMARY KEY,
    ca_id             TEXT   NOT NULL REFERENCES certificate_authorities (id) ON DELETE RESTRICT,
    device_id         TEXT,
    common_name       TEXT   NOT NULL,
    csr_pem           TEXT,
    key_algorithm     TEXT,
    validity_days     BIGINT NOT NULL,
    status            TEXT   NOT NULL CHECK (status IN ('active', 'inactive', 'revoked')),
    revocation_reason TEXT,
    revoked_at        TEXT,
    serial            TEXT   NOT NULL,
    certificate_pem   TEXT   NOT NULL,
    fingerprint       TEXT   NOT NULL UNIQUE,
    not_before        TEXT   NOT NULL,
    not_after         TEXT   NOT NULL,
    created_at        TEXT   NOT NULL,
    updated_at        TEXT   NOT NULL,
    version           BIGINT NOT NULL CHECK (version >= 1),
    CHECK ((status = 'revoked') = (revocation_reason IS NOT NULL)),
    CHECK ((status = 'revoked') = (revoked_at IS NOT NULL)),
    CHECK (csr_pem IS NULL OR key_algorithm IS NULL)
);
CREATE UNIQUE INDEX certificates_ca_serial ON certificates (ca_id, serial);
CREATE INDEX certificates_ca_status ON certificates (ca_id, status);
CREATE INDEX certificates_device ON certificates (device_id, id) WHERE device_id IS NOT NULL;
CREATE INDEX certificates_not_active ON certificates (updated_at) WHERE status <> 'active';

CREATE TABLE crl_entries (
    ca_id      TEXT NOT NULL REFERENCES certificate_authorities (id) ON DELETE CASCADE,
    serial     TEXT NOT NULL,
    revoked_at TEXT NOT NULL,
    reason     TEXT NOT NULL,
    not_after  TEXT NOT NULL,
    PRIMARY KEY (ca_id, serial)
);
CREATE INDEX crl_entries_revoked ON crl_entries (revoked_at);

CREATE TABLE enrollments (
    id               TEXT   NOT NULL PRIMARY KEY,
    name             TEXT   NOT NULL UNIQUE,
    ca_id            TEXT   NOT NULL REFERENCES certificate_authorities (id) ON DELETE RESTRICT,
    group_id         TEXT   NOT NULL REFERENCES device_groups (id) ON DELETE RESTRICT,
    name_template    TEXT   NOT NULL,
    attributes       TEXT   NOT NULL DEFAULT '{}',
    allowed_hardware TEXT   NOT NULL DEFAULT '[]',
    max_devices      BIGINT CHECK (max_devices IS NULL OR max_devices >= 1),
    enabled          BIGINT NOT NULL CHECK (enabled IN (0, 1)),
    enrolled_count   BIGINT NOT NULL DEFAULT 0 CHECK (enrolled_count >= 0),
    created_at       TEXT   NOT NULL,
    updated_at       TEXT   NOT NULL,
    version          BIGINT NOT NULL CHECK (version >= 1)
);
CREATE INDEX enrollments_ca ON enrollments (ca_id);
CREATE INDEX enrollments_group ON enrollments (group_id);

CREATE TABLE rollout_devices (
    rollout_id           TEXT   NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
    device_id            TEXT   NOT NULL,
    state                TEXT   NOT NULL CHECK (state IN ('pending', 'in_progress', 'succeeded',
                                                          'failed', 'rolled_back', 'cancelled')),
    attempt              BIGINT NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    phase                BIGINT,
    assigned_at          TEXT,
    deadline             TEXT,
    delivered_at         TEXT,
    previous_firmware_id TEXT,
    rollback_state       TEXT CHECK (rollback_state IN ('pending', 'delivered', 'done', 'failed')),
    reason               TEXT,
    updated_at           TEXT   NOT NULL,
    PRIMARY KEY (rollout_id, device_id)
);
CREATE INDEX rollout_devices_state ON rollout_devices (rollout_id, state, device_id);
CREATE INDEX rollout_devices_deadline ON rollout_devices (rollout_id, deadline)
    WHERE state = 'in_progress';
CREATE INDEX rollout_devices_device ON rollout_devices (device_id, state);

CREATE TABLE certificate_bindings (
    certificate_id TEXT NOT NULL PRIMARY KEY REFERENCES certificates (id) ON DELETE CASCADE,
    device_id      TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    enrollment_id  TEXT REFERENCES enrollments (id) ON DELETE SET NULL,
    enrolled_at    TEXT NOT NULL
);
CREATE INDEX certificate_bindings_device ON certificate_bindings (device_id);
CREATE INDEX certificate_bindings_enrollment ON certificate_bindings (enrollment_id)
    WHERE enrollment_id IS NOT NULL;

CREATE TABLE device_server_ca (
    id              BIGINT NOT NULL PRIMARY KEY CHECK (id = 1),
    certificate_pem TEXT   NOT NULL,
    private_key     BYTEA  NOT NULL,
    master_key_id   TEXT   NOT NULL,
    created_at      TEXT   NOT NULL
);

-- Rollout engine leases: which fleetd replica drives which rollout, until
-- when. A replica renews its leases every tick; one that dies stops
-- renewing, and another takes its rollouts over once `expires_at` passes.
CREATE TABLE rollout_leases (
    rollout_id TEXT NOT NULL PRIMARY KEY REFERENCES rollouts (id) ON DELETE CASCADE,
    holder     TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX rollout_leases_holder ON rollout_leases (holder);

-- Replicas running the rollout engine, alive until `expires_at`; the
-- number of live ones sets each one's share of the rollouts.
CREATE TABLE engine_replicas (
    holder     TEXT NOT NULL PRIMARY KEY,
    expires_at TEXT NOT NULL
);
