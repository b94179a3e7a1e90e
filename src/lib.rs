//! flashstock: an inventory engine for flash sales. Each hot product and coupon
//! campaign has one actor that decides every change to it in memory; batches of
//! changes are committed behind it, and clients are answered after their batch.

pub mod domain;
