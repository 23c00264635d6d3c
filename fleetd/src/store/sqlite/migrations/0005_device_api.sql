-- Device API: certificates recorded at enrollment, their binding to the
-- device they enrolled, and the CA that signs the device listener's TLS
-- server certificate.

-- A certificate a device presents at enrollment was signed outside fleetd
-- (by a factory holding the CA key): fleetd has neither its CSR nor a key
-- algorithm it generated. The CHECK of 0003 required exactly one of the two;
-- rebuild the table with "at most one". No other table has a foreign key to
-- `certificates`, so the rebuild is a plain copy.
CREATE TABLE certificates_0005 (
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
    CHECK (csr_pem IS NULL OR key_algorithm IS NULL)
) STRICT;

INSERT INTO certificates_0005
    SELECT id, ca_id, device_id, common_name, csr_pem, key_algorithm, validity_days, status,
           revocation_reason, revoked_at, serial, certificate_pem, fingerprint, not_before,
           not_after, created_at, updated_at, version
      FROM certificates;
DROP TABLE certificates;
ALTER TABLE certificates_0005 RENAME TO certificates;

CREATE UNIQUE INDEX certificates_ca_serial ON certificates (ca_id, serial);
CREATE INDEX certificates_ca_status ON certificates (ca_id, status);
CREATE INDEX certificates_device ON certificates (device_id, id) WHERE device_id IS NOT NULL;
-- The device listener checks at every TLS handshake whether its trusted
-- set is current (count and latest change of CAs, CRL entries and
-- suspended certificates); these keep that O(log n).
CREATE INDEX certificates_not_active ON certificates (updated_at) WHERE status <> 'active';
CREATE INDEX crl_entries_revoked ON crl_entries (revoked_at);

-- Which device a certificate enrolled. Written by zero-touch enrollment;
-- the device API resolves a certificate to its device through this row
-- first, then through certificates.device_id (certificates the admin API
-- issued to a device). Deleting the device or the certificate drops the
-- binding; a certificate whose device was deleted may enroll again.
CREATE TABLE certificate_bindings (
    certificate_id TEXT NOT NULL PRIMARY KEY REFERENCES certificates (id) ON DELETE CASCADE,
    device_id      TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    -- NULL once the enrollment is deleted: the device stays enrolled.
    enrollment_id  TEXT REFERENCES enrollments (id) ON DELETE SET NULL,
    enrolled_at    TEXT NOT NULL
) STRICT;

CREATE INDEX certificate_bindings_device ON certificate_bindings (device_id);
CREATE INDEX certificate_bindings_enrollment ON certificate_bindings (enrollment_id)
    WHERE enrollment_id IS NOT NULL;

-- The CA of the device listener's TLS server certificates: one per fleet
-- (shared by replicas of one database), created on first start. Devices pin
-- its certificate. The key is sealed with the master key like CA keys.
CREATE TABLE device_server_ca (
    id              INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    certificate_pem TEXT    NOT NULL,
    private_key     BLOB    NOT NULL,
    master_key_id   TEXT    NOT NULL,
    created_at      TEXT    NOT NULL
) STRICT;
