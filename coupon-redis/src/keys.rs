//! Key layout: every key of one campaign shares a hash tag, so Redis Cluster keeps a
//! campaign on one slot and its scripts never cross slots.

use coupon_core::CampaignId;

/// The keys of one campaign under a prefix: `{<prefix>:<id>}:count`, `:users`, `:slots`,
/// `:free`, `:claims`, `:rebuild`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignKeys {
    /// Slots taken (a string holding an integer).
    pub count: String,
    /// Held slots (a hash: `<user>` for a user's slot 1, `<user>:<slot>` above it ->
    /// `<rank>:<admission time in ms>`, by the Redis clock), and the field `~free`: how
    /// many ranks wait in `free`.
    pub users: String,
    /// Slots per user (a hash: user id -> slots), only for per-user limits above 1.
    pub slots: String,
    /// Ranks given back by releases (a sorted set), granted again first.
    pub free: String,
    /// Slots the settler claimed (a hash: the field of `users` -> `<rank>:<claim time in ms>`).
    pub claims: String,
    /// The lock of a rebuild in progress (a string: the rebuild's token, with a TTL).
    pub rebuild: String,
    /// The hash tag the keys share, for keys a rebuild prepares under its token.
    tag: String,
}

impl CampaignKeys {
    /// The keys of `campaign` under `prefix`.
    ///
    /// ```
    /// use coupon_core::CampaignId;
    /// use coupon_redis::CampaignKeys;
    /// let keys = CampaignKeys::new("coupon", CampaignId(7));
    /// assert_eq!(keys.count, "{coupon:7}:count");
    /// assert_eq!(keys.users, "{coupon:7}:users");
    /// ```
    pub fn new(prefix: &str, campaign: CampaignId) -> Self {
        let tag = format!("{{{prefix}:{campaign}}}");
        Self {
            count: format!("{tag}:count"),
            users: format!("{tag}:users"),
            slots: format!("{tag}:slots"),
            free: format!("{tag}:free"),
            claims: format!("{tag}:claims"),
            rebuild: format!("{tag}:rebuild"),
            tag,
        }
    }

    /// Where the rebuild holding the lock with `token` prepares the free ranks and the
    /// per-user records, which its seal renames into place: a rebuild that lost the
    /// lock then writes nothing the campaign reads.
    pub(crate) fn prepared(&self, token: &str) -> (String, String) {
        (
            format!("{}:free:{token}", self.tag),
            format!("{}:slots:{token}", self.tag),
        )
    }

    /// Every key of the campaign.
    pub(crate) fn as_array(&self) -> [&str; 6] {
        [
            &self.count,
            &self.users,
            &self.slots,
            &self.free,
            &self.claims,
            &self.rebuild,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The part of a key Redis Cluster hashes: between the first `{` and the next `}`.
    fn hash_tag(key: &str) -> &str {
        let open = key.find('{').expect("a tag");
        let close = key[open..].find('}').expect("a closed tag") + open;
        &key[open + 1..close]
    }

    #[test]
    fn all_keys_of_a_campaign_share_one_hash_tag() {
        let keys = CampaignKeys::new("shop:coupon", CampaignId(123));
        let tags: Vec<&str> = keys.as_array().iter().map(|k| hash_tag(k)).collect();
        assert_eq!(tags, vec!["shop:coupon:123"; 6]);
    }

    #[test]
    fn campaigns_get_distinct_tags() {
        let a = CampaignKeys::new("coupon", CampaignId(1));
        let b = CampaignKeys::new("coupon", CampaignId(11));
        assert_ne!(hash_tag(&a.count), hash_tag(&b.count));
    }
}
