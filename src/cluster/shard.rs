//! The stable map from items to shards. It must give the same answer on every
//! node and across releases, so it is a fixed function (SplitMix64's finaliser),
//! never `std`'s randomly seeded hasher.

use crate::domain::ItemKey;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The shard of `item` among `shard_count` shards.
pub fn shard_of(item: ItemKey, shard_count: u32) -> u32 {
    assert!(shard_count > 0);
    let kind_salt: u64 = match item {
        ItemKey::Product(_) => 0x5052_4f44,  // "PROD"
        ItemKey::Campaign(_) => 0x4341_4d50, // "CAMP"
    };
    (mix(item.raw_id() ^ mix(kind_salt)) % u64::from(shard_count)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CampaignId, ProductId};

    #[test]
    fn is_stable_across_releases() {
        // These values are part of the storage format: a change moves items
        // between shards of a running cluster.
        let got: Vec<u32> = (1..=6)
            .map(|id| shard_of(ItemKey::Product(ProductId(id)), 128))
            .collect();
        assert_eq!(got, STABLE_PRODUCT_SHARDS);
    }

    const STABLE_PRODUCT_SHARDS: [u32; 6] = [125, 9, 126, 45, 96, 44];

    #[test]
    fn spreads_items_evenly() {
        let mut counts = [0u32; 16];
        for id in 0..16_000 {
            counts[shard_of(ItemKey::Campaign(CampaignId(id)), 16) as usize] += 1;
        }
        assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
    }
}
