-- The settings registry (issue 29): settings change through PATCH /api/v1/settings, with one
-- version for all of them (optimistic concurrency), and two new permissions.

ALTER TABLE business ADD COLUMN settings_version bigint NOT NULL DEFAULT 1;

-- Seeded by setup but never read: the password length, session count and lockout live in the
-- config file ([auth]), where the server reads them. A stored value that changes nothing would
-- mislead whoever edits it.
DELETE FROM settings
 WHERE key IN ('security.password_min_length', 'security.max_sessions_per_user', 'security.lockout_threshold');

-- Built-in roles of an instance set up before get the new permissions here (a new instance gets
-- them at setup from the declarations). super_admin also gets the cash permissions of 0016,
-- which that migration left out.
INSERT INTO role_permissions (role_id, permission)
SELECT r.id, p.permission
  FROM roles r
  JOIN (VALUES ('super_admin', 'administration.settings.read'), ('super_admin', 'administration.settings.manage'),
               ('super_admin', 'operations.cash.manage_any'), ('super_admin', 'operations.cash.report_any'),
               ('manager', 'administration.settings.read'), ('accountant', 'administration.settings.read'),
               ('auditor', 'administration.settings.read')) AS p (role, permission)
    ON p.role = r.name
 WHERE r.builtin
ON CONFLICT DO NOTHING;
