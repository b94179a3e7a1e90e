//! Which node serves which item: the shard map (`shard_of`) and shard ownership
//! behind the `Ownership` trait. One node (`LocalOwnership`) owns every shard;
//! the Redis-leased implementation for a cluster sits behind the same trait.
//! Nothing here touches stock.

pub mod ownership;
pub mod shard;

pub use ownership::{LocalOwnership, Ownership};
pub use shard::shard_of;
