//! flashstock: an inventory engine for flash sales. Each hot product and coupon
//! campaign has one actor that decides every change to it in memory; batches of
//! changes are committed behind it, and clients are answered after their batch.

pub mod actors;
pub mod app;
pub mod cluster;
pub mod config;
pub mod domain;
pub mod http;
pub mod loadtest;
pub mod memory;
pub mod metrics;
pub mod persistence;
pub mod telemetry;
