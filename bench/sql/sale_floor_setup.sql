-- Setup for sale_floor.pgbench (bench/sale_throughput.py --floors): numbered views of a set-up
-- plugpos database's registers (with their open sessions) and products, for pgbench's integer variables.
DROP TABLE IF EXISTS bench_regs, bench_products;
CREATE TABLE bench_regs AS
  SELECT row_number() OVER (ORDER BY r.code) AS n, r.id AS register_id, r.code, r.location_id, s.id AS session_id, s.opened_by AS cashier_id
  FROM registers r JOIN cash_sessions s ON s.register_id = r.id AND s.status = 'open';
CREATE UNIQUE INDEX ON bench_regs (n);
CREATE TABLE bench_products AS
  SELECT row_number() OVER (ORDER BY p.sku) AS n, p.id, p.sku, p.name, p.price, p.tax_class_id FROM products p;
CREATE UNIQUE INDEX ON bench_products (n);
ANALYZE bench_regs; ANALYZE bench_products;
