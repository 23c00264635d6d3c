-- Enrollments may admit only certificates whose common name matches a
-- glob (NULL: any common name).
ALTER TABLE enrollments ADD COLUMN common_name_pattern TEXT;
