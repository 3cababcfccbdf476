-- The support bundle (POST /api/v1/support-bundle) is exported with a permission of its own;
-- super admins of existing installations get it as new ones do at setup.
INSERT INTO role_permissions (role_id, permission)
SELECT r.id, 'administration.diagnostics.export'
  FROM roles r
 WHERE r.builtin AND r.name = 'super_admin'
ON CONFLICT DO NOTHING;
