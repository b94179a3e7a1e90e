-- flashstock schema, SQLite. Times are milliseconds since the Unix epoch.

CREATE TABLE meta (
    name TEXT NOT NULL PRIMARY KEY,
    value INTEGER NOT NULL
);

-- One row per shard; `epoch` fences writers: every write-behind transaction first
-- updates its shard's row where the epoch is the writer's own.
CREATE TABLE shard_epochs (
    shard INTEGER NOT NULL PRIMARY KEY,
    epoch INTEGER NOT NULL,
    owner TEXT NULL,
    batches INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE products (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    price INTEGER NOT NULL,
    total_stock INTEGER NOT NULL,
    stock_available INTEGER NOT NULL,
    stock_reserved INTEGER NOT NULL,
    sold INTEGER NOT NULL,
    written_off INTEGER NOT NULL,
    per_user_limit INTEGER NULL,
    sale_starts_at INTEGER NULL,
    sale_ends_at INTEGER NULL,
    views INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    CHECK (
        stock_available >= 0 AND stock_reserved >= 0 AND sold >= 0 AND written_off >= 0
        AND stock_available + stock_reserved + sold + written_off = total_stock)
);

CREATE TABLE orders (
    id TEXT NOT NULL PRIMARY KEY,
    user_id TEXT NOT NULL,
    product_id INTEGER NOT NULL,
    quantity INTEGER NOT NULL,
    unit_price INTEGER NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX orders_by_user ON orders (user_id, id);
CREATE INDEX orders_by_product ON orders (product_id, status);

CREATE TABLE campaigns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    quantity INTEGER NOT NULL,
    issued INTEGER NOT NULL,
    per_user_limit INTEGER NOT NULL,
    discount_kind TEXT NOT NULL,
    discount_value INTEGER NOT NULL,
    starts_at INTEGER NULL,
    ends_at INTEGER NULL,
    created_at INTEGER NOT NULL,
    CHECK (issued >= 0 AND issued <= quantity)
);

CREATE TABLE coupons (
    id TEXT NOT NULL PRIMARY KEY,
    campaign_id INTEGER NOT NULL,
    user_id TEXT NOT NULL,
    issued_at INTEGER NOT NULL
);
CREATE INDEX coupons_by_user ON coupons (user_id, id);
CREATE INDEX coupons_by_campaign ON coupons (campaign_id, user_id);

-- Idempotency keys of the last 24 h, per item (P = product, C = campaign) and user,
-- with what the first request got: a result id or a refusal code.
CREATE TABLE idempotency_keys (
    item_kind TEXT NOT NULL,
    item_id INTEGER NOT NULL,
    user_id TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    fingerprint INTEGER NOT NULL,
    result_id TEXT NULL,
    refusal TEXT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (item_kind, item_id, user_id, idem_key)
);
CREATE INDEX idempotency_by_age ON idempotency_keys (item_kind, item_id, created_at);
