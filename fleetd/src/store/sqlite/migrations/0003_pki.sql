-- PKI: certificate authorities, device certificates, CRL entries and
-- enrollments.

-- A CA's private key is stored sealed with fleetd's master key (see
-- src/keystore.rs): ChaCha20-Poly1305, bound to the CA certificate's
-- fingerprint. master_key_id says which master key sealed it, so a fleetd
-- started with another master key refuses to start instead of failing on
-- the first signature.
CREATE TABLE certificate_authorities (
    id              TEXT    NOT NULL PRIMARY KEY,
    name            TEXT    NOT NULL UNIQUE,
    description     TEXT    NOT NULL DEFAULT '',
    common_name     TEXT    NOT NULL,
    organization    TEXT,
    key_algorithm   TEXT    NOT NULL,
    validity_days   INTEGER NOT NULL,
    imported        INTEGER NOT NULL CHECK (imported IN (0, 1)),
    certificate_pem TEXT    NOT NULL,
    fingerprint     TEXT    NOT NULL,
    serial          TEXT    NOT NULL,
    not_before      TEXT    NOT NULL,
    not_after       TEXT    NOT NULL,
    private_key     BLOB    NOT NULL, -- sealed; never returned by the API
    master_key_id   TEXT    NOT NULL,
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL,
    version         INTEGER NOT NULL CHECK (version >= 1)
) STRICT;

-- Device certificates. There is no private key column: a key fleetd
-- generates is returned once and never stored. device_id has no foreign
-- key (a device's certificates outlive it in the audit sense); it is
-- checked on write.
CREATE TABLE certificates (
    id                TEXT    NOT NULL PRIMARY KEY,
    ca_id             TEXT    NOT NULL REFERENCES certificate_authorities (id) ON DELETE RESTRICT,
    device_id         TEXT,
    common_name       TEXT    NOT NULL,
    csr_pem           TEXT,
    key_algorithm     TEXT,
    validity_days     INTEGER NOT NULL,
    status            TEXT    NOT NULL CHECK (status IN ('active', 'inactive', 'revoked')),
    revocation_reason TEXT,
    revoked_at        TEXT,
    serial            TEXT    NOT NULL,
    certificate_pem   TEXT    NOT NULL,
    fingerprint       TEXT    NOT NULL UNIQUE,
    not_before        TEXT    NOT NULL,
    not_after         TEXT    NOT NULL,
    created_at        TEXT    NOT NULL,
    updated_at        TEXT    NOT NULL,
    version           INTEGER NOT NULL CHECK (version >= 1),
    CHECK ((status = 'revoked') = (revocation_reason IS NOT NULL)),
    CHECK ((status = 'revoked') = (revoked_at IS NOT NULL)),
    CHECK ((csr_pem IS NULL) <> (key_algorithm IS NULL))
) STRICT;

CREATE UNIQUE INDEX certificates_ca_serial ON certificates (ca_id, serial);
CREATE INDEX certificates_ca_status ON certificates (ca_id, status);
CREATE INDEX certificates_device ON certificates (device_id, id) WHERE device_id IS NOT NULL;

-- What the CA's CRL lists: serials revoked, or deleted without having been
-- revoked. Kept apart from `certificates` so deleting a certificate row
-- never takes its serial off the CRL; goes with the CA.
CREATE TABLE crl_entries (
    ca_id      TEXT NOT NULL REFERENCES certificate_authorities (id) ON DELETE CASCADE,
    serial     TEXT NOT NULL,
    revoked_at TEXT NOT NULL,
    reason     TEXT NOT NULL,
    not_after  TEXT NOT NULL, -- entries of expired certificates are left out of the CRL
    PRIMARY KEY (ca_id, serial)
) STRICT, WITHOUT ROWID;

CREATE TABLE enrollments (
    id               TEXT    NOT NULL PRIMARY KEY,
    name             TEXT    NOT NULL UNIQUE,
    ca_id            TEXT    NOT NULL REFERENCES certificate_authorities (id) ON DELETE RESTRICT,
    group_id         TEXT    NOT NULL REFERENCES device_groups (id) ON DELETE RESTRICT,
    name_template    TEXT    NOT NULL,
    attributes       TEXT    NOT NULL DEFAULT '{}', -- JSON object of string → string
    allowed_hardware TEXT    NOT NULL DEFAULT '[]', -- JSON array of strings
    max_devices      INTEGER CHECK (max_devices IS NULL OR max_devices >= 1),
    enabled          INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    enrolled_count   INTEGER NOT NULL DEFAULT 0 CHECK (enrolled_count >= 0),
    created_at       TEXT    NOT NULL,
    updated_at       TEXT    NOT NULL,
    version          INTEGER NOT NULL CHECK (version >= 1)
) STRICT;

CREATE INDEX enrollments_ca ON enrollments (ca_id);
CREATE INDEX enrollments_group ON enrollments (group_id);
