-- The timer sweep finds products whose orders are due an automatic transition.
CREATE INDEX orders_due_by_expiry ON orders (status, expires_at);
CREATE INDEX orders_due_by_update ON orders (status, updated_at);
