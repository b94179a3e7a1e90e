-- When the product's next automatic order transition (expiry, shipping,
-- delivery) falls due, written with its counts: the timer sweep finds products
-- to activate here, without indexing every order by time.
ALTER TABLE products ADD COLUMN next_due_at BIGINT NULL;
CREATE INDEX products_by_next_due ON products (next_due_at);
