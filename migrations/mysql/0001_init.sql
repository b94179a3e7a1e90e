-- flashstock schema, MariaDB/MySQL. Times are milliseconds since the Unix epoch.
-- User ids and keys compare byte for byte (_bin collations): "alice" is not "Alice".

CREATE TABLE meta (
    name VARCHAR(64) NOT NULL PRIMARY KEY,
    value BIGINT NOT NULL
);

-- One row per shard; `epoch` fences writers: every write-behind transaction first
-- updates its shard's row where the epoch is the writer's own.
CREATE TABLE shard_epochs (
    shard BIGINT NOT NULL PRIMARY KEY,
    epoch BIGINT NOT NULL,
    owner VARCHAR(255) NULL,
    batches BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE products (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(200) NOT NULL,
    price BIGINT NOT NULL,
    total_stock BIGINT NOT NULL,
    stock_available BIGINT NOT NULL,
    stock_reserved BIGINT NOT NULL,
    sold BIGINT NOT NULL,
    written_off BIGINT NOT NULL,
    per_user_limit BIGINT NULL,
    sale_starts_at BIGINT NULL,
    sale_ends_at BIGINT NULL,
    views BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    CONSTRAINT products_counts CHECK (
        stock_available >= 0 AND stock_reserved >= 0 AND sold >= 0 AND written_off >= 0
        AND stock_available + stock_reserved + sold + written_off = total_stock)
);

CREATE TABLE orders (
    id CHAR(26) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    user_id VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    product_id BIGINT NOT NULL,
    quantity BIGINT NOT NULL,
    unit_price BIGINT NOT NULL,
    status VARCHAR(24) NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    KEY orders_by_user (user_id, id),
    KEY orders_by_product (product_id, status)
);

CREATE TABLE campaigns (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(200) NOT NULL,
    quantity BIGINT NOT NULL,
    issued BIGINT NOT NULL,
    per_user_limit BIGINT NOT NULL,
    discount_kind VARCHAR(16) NOT NULL,
    discount_value BIGINT NOT NULL,
    starts_at BIGINT NULL,
    ends_at BIGINT NULL,
    created_at BIGINT NOT NULL,
    CONSTRAINT campaigns_counts CHECK (issued >= 0 AND issued <= quantity)
);

CREATE TABLE coupons (
    id CHAR(26) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    campaign_id BIGINT NOT NULL,
    user_id VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    issued_at BIGINT NOT NULL,
    KEY coupons_by_user (user_id, id),
    KEY coupons_by_campaign (campaign_id, user_id)
);

-- Idempotency keys of the last 24 h, per item (P = product, C = campaign) and user,
-- with what the first request got: a result id or a refusal code.
CREATE TABLE idempotency_keys (
    item_kind CHAR(1) CHARACTER SET ascii NOT NULL,
    item_id BIGINT NOT NULL,
    user_id VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    idem_key VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    fingerprint BIGINT NOT NULL,
    result_id CHAR(26) CHARACTER SET ascii COLLATE ascii_bin NULL,
    refusal VARCHAR(64) NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (item_kind, item_id, user_id, idem_key),
    KEY idempotency_by_age (item_kind, item_id, created_at)
);
