//! The server-wide fencing-token counter: a hybrid of a counter and the wall clock.
//!
//! A new acquisition gets `max(last + 1, floor)`, where `floor = (now_ms << CLOCK_SHIFT) +
//! lead`. On one node tokens rise by at least one per grant whatever the clock does. Across
//! nodes they follow the clock: a node that takes over keys (a slot moved to it, keys restored
//! on it) grants tokens above the ones the old node granted for them as long as the two clocks
//! differ by less than the time between the old node's last grant and the new node's first (a
//! slot move takes several admin round trips; NTP keeps clocks within milliseconds).
//!
//! `lead` is how far tokens run ahead of the clock. Every token a node sees (loaded, replicated,
//! or heard from another node over the cluster bus) raises the lead to at least `seen - clock`:
//! from then on this node assumes the token's source went on granting at the highest rate
//! tokens allow (1024 a millisecond, far above what one Redis node serves) and stays above it.
//! So leads spread through a cluster instead of being undercut after a slot move.
//!
//! A promoted replica cannot know what its old master granted after the last change it
//! replicated, nor what that master grants while both believe they are master (a split brain).
//! Promotion therefore adds `split_allowance_ms` of clock to the lead: the new master's tokens
//! exceed every token the old master grants until the old master's clock passes the moment of
//! the promotion plus that allowance.
//!
//! Tokens stay below 2^53 (exact in JavaScript and in a double). The clock part reaches 2^53 in
//! the year 2248 (2^43 ms after 1970); each promotion brings that forward by its allowance
//! (100,000 promotions with the default 10 minutes: by 1.9 years).
//!
//! Tokens written by earlier versions (a counter from 1, with promotion epochs in the bits above
//! 2^45) load as they are and keep their order: the counter rises above the highest one seen.
//!
//! What comes from outside (a loaded or restored key, a replayed `LOCK.APPLY` or `LOCK.TOKENS`,
//! the saved counter, another node's floor) may raise the counter only up to a ceiling:
//! `MAX_LEAD_MS` (ten years) of clock ahead of this node's clock, or this node's own lead when
//! that is larger. One token near 2^53 (a crafted `RESTORE` payload) would otherwise end every
//! grant for good, and spread through saves, replicas and the cluster bus. An honest token runs
//! ahead of its node's clock by that node's lead (promotions' allowances: 100,000 of them make
//! 1.9 years), by a clock that was ahead and stepped back, or by grants beyond 1024 a millisecond
//! (a few at most): all far below ten years. The bound is absolute, not relative to this node's
//! lead, so that a node restarted with no lead yet (before its saved counter, or from an AOF
//! without one) takes back an honest lead of any size, and so that repeating a token just below
//! the ceiling cannot walk the counter up: whatever is loaded, tokens reach 2^53 no earlier than
//! ten years before the year 2248.

/// A millisecond of wall clock is worth `1 << CLOCK_SHIFT` tokens.
pub const CLOCK_SHIFT: u32 = 10;
/// The largest token ever handed out: 2^53 - 1, the largest integer a double holds exactly.
pub const MAX_TOKEN: u64 = (1 << 53) - 1;
/// How far a promotion lifts tokens ahead of the clock by default: 10 minutes, the longest an
/// old master is expected to keep granting after its replica took over (see the README's
/// guarantees section for what happens past it).
pub const DEFAULT_SPLIT_ALLOWANCE_MS: u64 = 10 * 60 * 1000;

/// The most a token taken in from outside may run ahead of this node's clock (unless the
/// node's own lead is larger): ten years of clock, in ms.
pub const MAX_LEAD_MS: u64 = 10 * 365 * 24 * 3600 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokensExhausted;

/// A token (or floor, or saved lead) beyond what may be taken in: `seen` is above `ceiling`.
/// The counter is left as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BeyondCeiling {
    pub seen: u64,
    pub ceiling: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TokenCounter {
    /// The last token handed out or seen.
    last: u64,
    /// How many tokens ahead of the clock the floor runs.
    lead: u64,
}

/// The token that wall-clock time `now_ms` (unix ms) is worth; 0 for a clock before 1970.
pub fn clock_floor(now_ms: i64) -> u64 {
    u64::try_from(now_ms)
        .unwrap_or(0)
        .saturating_mul(1 << CLOCK_SHIFT)
        .min(MAX_TOKEN)
}

impl TokenCounter {
    #[cfg(test)]
    pub const fn new() -> Self {
        Self { last: 0, lead: 0 }
    }

    /// A counter as kept between calls: its last token and its lead.
    pub const fn from_parts(last: u64, lead: u64) -> Self {
        Self { last, lead }
    }

    /// The last token handed out or seen (0 before the first).
    pub fn last(&self) -> u64 {
        self.last
    }

    /// How many tokens ahead of the clock the floor runs.
    pub fn lead(&self) -> u64 {
        self.lead
    }

    /// The same lead in milliseconds of clock.
    pub fn lead_ms(&self) -> u64 {
        self.lead >> CLOCK_SHIFT
    }

    /// The lowest token a grant at `now_ms` may get: the clock's worth plus the lead.
    pub fn floor(&self, now_ms: i64) -> u64 {
        clock_floor(now_ms).saturating_add(self.lead).min(MAX_TOKEN)
    }

    /// The token for a new acquisition at wall-clock time `now_ms` (unix ms): above the last
    /// one and not below the floor.
    pub fn next_token(&mut self, now_ms: i64) -> Result<u64, TokensExhausted> {
        if self.last >= MAX_TOKEN {
            return Err(TokensExhausted);
        }
        self.last = (self.last + 1).max(self.floor(now_ms));
        Ok(self.last)
    }

    /// Takes in a token seen at `now_ms` in loaded, replicated or broadcast data: no later token
    /// repeats or undercuts it, nor what its source can grant after it at the clock's rate.
    pub fn observe(&mut self, seen: u64, now_ms: i64) {
        let seen = seen.min(MAX_TOKEN);
        self.last = self.last.max(seen);
        self.lead = self.lead.max(seen.saturating_sub(clock_floor(now_ms)));
    }

    /// Takes back a lead saved with the data (RDB aux data): a restart keeps tokens as far
    /// ahead of the clock as they were.
    pub fn restore_lead(&mut self, lead: u64) {
        self.lead = self.lead.max(lead.min(MAX_TOKEN));
    }

    /// The largest lead, in tokens, that data from outside may give this counter:
    /// `MAX_LEAD_MS` of clock, or the counter's own lead when that is larger.
    pub fn max_lead(&self) -> u64 {
        self.lead.max(MAX_LEAD_MS << CLOCK_SHIFT)
    }

    /// The highest token that data from outside may bring in at wall-clock time `now_ms`
    /// (unix ms): the clock's worth plus `max_lead`.
    pub fn ceiling(&self, now_ms: i64) -> u64 {
        clock_floor(now_ms)
            .saturating_add(self.max_lead())
            .min(MAX_TOKEN)
    }

    /// Whether `seen` may be taken in at `now_ms` (see `ceiling`).
    pub fn admits(&self, seen: u64, now_ms: i64) -> Result<(), BeyondCeiling> {
        let ceiling = self.ceiling(now_ms);
        if seen <= ceiling {
            Ok(())
        } else {
            Err(BeyondCeiling { seen, ceiling })
        }
    }

    /// Takes in a token seen at `now_ms` in loaded or replayed data, as `observe` does, if it
    /// lies within the ceiling; beyond it the counter is left as it was.
    pub fn take_in(&mut self, seen: u64, now_ms: i64) -> Result<(), BeyondCeiling> {
        self.admits(seen, now_ms)?;
        self.observe(seen, now_ms);
        Ok(())
    }

    /// Takes in another node's floor, sent when that node's clock read `sent_at` (unix ms),
    /// heard at `now_ms`: the floor must lie within the ceiling, and the lead it gives over the
    /// sender's clock within `max_lead` (a send time far in the past would make any floor a
    /// huge lead). Otherwise the counter is left as it was.
    pub fn take_in_floor(
        &mut self,
        floor: u64,
        sent_at: i64,
        now_ms: i64,
    ) -> Result<(), BeyondCeiling> {
        self.admits(floor, now_ms)?;
        let lead = floor.saturating_sub(clock_floor(sent_at));
        if lead > self.max_lead() {
            return Err(BeyondCeiling {
                seen: floor,
                ceiling: clock_floor(sent_at).saturating_add(self.max_lead()),
            });
        }
        self.observe(floor, sent_at);
        Ok(())
    }

    /// Takes back the counter saved with the data (RDB aux data) at `now_ms`: its lead if
    /// within `max_lead`, then its last token if within the ceiling that leaves. Each part
    /// beyond its bound is left out (the first of them is the error); a node restarted from
    /// such data starts again at the clock's floor.
    pub fn take_in_saved(
        &mut self,
        last: u64,
        lead: u64,
        now_ms: i64,
    ) -> Result<(), BeyondCeiling> {
        let lead_refused = if lead <= self.max_lead() {
            self.restore_lead(lead);
            None
        } else {
            Some(BeyondCeiling {
                seen: lead,
                ceiling: self.max_lead(),
            })
        };
        let last_taken = self.take_in(last, now_ms);
        match lead_refused {
            Some(refused) => Err(refused),
            None => last_taken,
        }
    }

    /// A replica became master at `now_ms`: tokens jump `split_allowance_ms` of clock above
    /// everything it knows, so that its next token exceeds every token its old master granted or
    /// grants until the old master's clock passes `now_ms + split_allowance_ms`.
    pub fn promote(&mut self, now_ms: i64, split_allowance_ms: u64) {
        let known = self.last.max(self.floor(now_ms));
        let jump = split_allowance_ms.saturating_mul(1 << CLOCK_SHIFT);
        self.lead = (known - clock_floor(now_ms)).saturating_add(jump);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-30 in unix ms.
    const NOW: i64 = 1_796_000_000_000;
    const YEAR_MS: u64 = 365 * 24 * 3600 * 1000;

    fn token(tokens: &mut TokenCounter, now_ms: i64) -> u64 {
        tokens.next_token(now_ms).unwrap_or_default()
    }

    #[test]
    fn the_first_token_is_the_clocks_floor_and_later_ones_rise_by_one_within_a_millisecond() {
        let mut tokens = TokenCounter::new();
        assert_eq!(tokens.next_token(NOW), Ok(clock_floor(NOW)));
        assert_eq!(tokens.next_token(NOW), Ok(clock_floor(NOW) + 1));
        assert_eq!(tokens.last(), clock_floor(NOW) + 1);
    }

    #[test]
    fn tokens_follow_the_clock_and_never_fall_when_it_steps_back() {
        let mut tokens = TokenCounter::new();
        let first = token(&mut tokens, NOW);
        let later = token(&mut tokens, NOW + 5);
        assert_eq!(later, clock_floor(NOW + 5));
        assert_eq!(token(&mut tokens, NOW - 60_000), later + 1);
        assert!(first < later);
    }

    #[test]
    fn a_node_whose_clock_is_later_grants_above_another_nodes_earlier_grants() {
        let mut a = TokenCounter::new();
        let mut last_of_a = 0;
        for _ in 0..1000 {
            last_of_a = token(&mut a, NOW);
        }
        let mut b = TokenCounter::new();
        assert!(token(&mut b, NOW + 1) > last_of_a);
    }

    #[test]
    fn a_seen_token_is_never_repeated_nor_undercut_by_its_sources_later_grants() {
        // The source leads its clock by a minute and grants at the highest rate tokens allow.
        let mut source = TokenCounter::from_parts(0, 60_000 << CLOCK_SHIFT);
        let seen = token(&mut source, NOW);
        let mut node = TokenCounter::new();
        node.observe(seen, NOW);
        assert_eq!(node.lead_ms(), 60_000);
        for ms in [1, 2, 500, 59_999, 600_000] {
            let mut source_last = 0;
            for _ in 0..1024 {
                source_last = token(&mut source, NOW + ms);
            }
            assert!(token(&mut node, NOW + ms + 1) > source_last, "at +{ms} ms");
        }
    }

    #[test]
    fn observing_a_lower_token_changes_nothing() {
        let mut tokens = TokenCounter::new();
        tokens.observe(clock_floor(NOW) + 41, NOW);
        assert_eq!(tokens.next_token(NOW), Ok(clock_floor(NOW) + 42));
        let before = tokens;
        tokens.observe(7, NOW);
        assert_eq!(tokens, before);
    }

    #[test]
    fn tokens_of_earlier_versions_keep_their_order() {
        // Epoch 3 of the old layout lies below today's clock floor; epoch 60 above it.
        let old = (3u64 << 45) + 17;
        let mut tokens = TokenCounter::new();
        tokens.observe(old, NOW);
        assert_eq!(tokens.lead(), 0);
        assert!(token(&mut tokens, NOW) > old);
        let old_high_epoch = (60u64 << 45) + 9;
        tokens.observe(old_high_epoch, NOW);
        assert_eq!(tokens.next_token(NOW), Ok(old_high_epoch + 1));
    }

    #[test]
    fn tokens_stop_below_two_to_the_53() {
        let mut tokens = TokenCounter::new();
        tokens.observe(MAX_TOKEN - 1, NOW);
        assert_eq!(tokens.next_token(NOW), Ok(MAX_TOKEN));
        assert_eq!(tokens.next_token(NOW + 1), Err(TokensExhausted));
        assert_eq!(tokens.last(), MAX_TOKEN);
        tokens.observe(u64::MAX, NOW);
        assert_eq!(tokens.last(), MAX_TOKEN);
        assert_eq!(clock_floor(i64::MAX), MAX_TOKEN);
        assert_eq!(clock_floor(-5), 0);
        let mut ahead = TokenCounter::from_parts(0, u64::MAX);
        assert_eq!(ahead.next_token(NOW), Ok(MAX_TOKEN));
        ahead.promote(NOW, u64::MAX);
        assert_eq!(ahead.next_token(NOW), Err(TokensExhausted));
    }

    #[test]
    fn a_promotion_outranks_what_the_old_master_grants_within_the_allowance() {
        // The replica saw the old master's counter up to `replicated`; the old master goes on
        // granting, unreplicated, at the highest rate tokens allow, for the whole allowance.
        let mut old_master = TokenCounter::new();
        let replicated = token(&mut old_master, NOW);
        let mut replica = TokenCounter::new();
        replica.observe(replicated, NOW);
        replica.promote(NOW, DEFAULT_SPLIT_ALLOWANCE_MS);
        assert_eq!(replica.lead_ms(), DEFAULT_SPLIT_ALLOWANCE_MS);
        let allowance = DEFAULT_SPLIT_ALLOWANCE_MS as i64;
        for ms in [0, 1, allowance / 2, allowance - 1] {
            let mut last_of_old_master = 0;
            for _ in 0..1024 {
                last_of_old_master = token(&mut old_master, NOW + ms);
            }
            assert!(
                token(&mut replica, NOW + ms) > last_of_old_master,
                "at +{ms} ms"
            );
        }
    }

    #[test]
    fn a_promotion_lifts_above_an_old_masters_own_lead() {
        // The old master was itself promoted a moment ago: its tokens lead its clock.
        let mut old_master = TokenCounter::new();
        old_master.promote(NOW, DEFAULT_SPLIT_ALLOWANCE_MS);
        let replicated = token(&mut old_master, NOW);
        let mut replica = TokenCounter::new();
        replica.observe(replicated, NOW);
        replica.promote(NOW + 1, DEFAULT_SPLIT_ALLOWANCE_MS);
        let first_of_new_master = token(&mut replica, NOW + 1);
        let mut last_of_old_master = 0;
        for _ in 0..100_000 {
            last_of_old_master = token(&mut old_master, NOW + 1);
        }
        assert!(first_of_new_master > last_of_old_master);
    }

    #[test]
    fn a_restored_lead_keeps_tokens_above_what_was_granted_before_a_crash() {
        // Granted after a promotion, then lost in a crash before any save: only the last
        // token saved before, and the lead, come back.
        let mut before = TokenCounter::new();
        before.promote(NOW, DEFAULT_SPLIT_ALLOWANCE_MS);
        let saved = token(&mut before, NOW);
        let lost = token(&mut before, NOW + 1000);
        let mut restarted = TokenCounter::new();
        restarted.observe(saved, NOW + 2000);
        restarted.restore_lead(before.lead());
        assert_eq!(restarted.lead(), before.lead());
        assert!(token(&mut restarted, NOW + 2000) > lost);
        restarted.restore_lead(0);
        assert_eq!(
            restarted.lead(),
            before.lead(),
            "a lower lead changes nothing"
        );
    }

    #[test]
    fn a_token_up_to_ten_years_ahead_of_the_clock_is_taken_in_and_one_more_is_refused() {
        let mut tokens = TokenCounter::new();
        let ceiling = clock_floor(NOW) + (MAX_LEAD_MS << CLOCK_SHIFT);
        assert_eq!(tokens.ceiling(NOW), ceiling);
        let refused = tokens.take_in(ceiling + 1, NOW);
        assert_eq!(
            refused,
            Err(BeyondCeiling {
                seen: ceiling + 1,
                ceiling
            })
        );
        assert_eq!(
            tokens,
            TokenCounter::new(),
            "a refused token changes nothing"
        );
        assert_eq!(tokens.take_in(ceiling, NOW), Ok(()));
        assert_eq!(tokens.next_token(NOW), Ok(ceiling + 1));
    }

    #[test]
    fn a_token_near_two_to_the_53_leaves_grants_at_the_clocks_floor() {
        let mut tokens = TokenCounter::new();
        assert!(tokens.take_in(MAX_TOKEN, NOW).is_err());
        assert!(tokens.take_in(u64::MAX, NOW).is_err());
        assert_eq!(tokens.next_token(NOW), Ok(clock_floor(NOW)));
    }

    #[test]
    fn tokens_just_below_the_ceiling_again_and_again_never_walk_the_counter_up() {
        let mut tokens = TokenCounter::new();
        for _ in 0..10_000 {
            let highest = tokens.ceiling(NOW);
            assert_eq!(tokens.take_in(highest, NOW), Ok(()));
        }
        assert_eq!(tokens.lead_ms(), MAX_LEAD_MS);
        assert_eq!(tokens.ceiling(NOW), clock_floor(NOW) + tokens.lead());
        assert!(tokens.take_in(tokens.ceiling(NOW) + 1, NOW).is_err());
        let left_ms = (MAX_TOKEN - tokens.last()) >> CLOCK_SHIFT;
        assert!(left_ms / YEAR_MS > 200, "{} years left", left_ms / YEAR_MS);
    }

    #[test]
    fn the_ceiling_follows_the_clock_and_a_larger_own_lead() {
        let tokens = TokenCounter::new();
        assert_eq!(
            tokens.ceiling(NOW + 1000) - tokens.ceiling(NOW),
            1000 << CLOCK_SHIFT
        );
        let own_lead = 2 * (MAX_LEAD_MS << CLOCK_SHIFT);
        let ahead = TokenCounter::from_parts(0, own_lead);
        assert_eq!(ahead.ceiling(NOW), clock_floor(NOW) + own_lead);
        assert_eq!(TokenCounter::new().ceiling(i64::MAX), MAX_TOKEN);
    }

    #[test]
    fn honest_tokens_are_all_taken_in() {
        // The source's clock a day ahead (or ours stepped back a day); a source after 100,000
        // promotions; tokens of an earlier version's 60th promotion epoch.
        let day_ahead = clock_floor(NOW + 24 * 3600 * 1000);
        let mut promoted = TokenCounter::new();
        for promotion in 0..100_000 {
            promoted.promote(NOW + promotion, DEFAULT_SPLIT_ALLOWANCE_MS);
        }
        let after_promotions = token(&mut promoted, NOW);
        for honest in [day_ahead, after_promotions, (60u64 << 45) + 9] {
            let mut tokens = TokenCounter::new();
            assert_eq!(tokens.take_in(honest, NOW), Ok(()), "{honest}");
            assert!(token(&mut tokens, NOW) > honest);
        }
    }

    #[test]
    fn a_floor_is_refused_beyond_the_ceiling_or_with_a_send_time_that_makes_it_a_huge_lead() {
        let mut tokens = TokenCounter::new();
        let hour: u64 = 3600 * 1000;
        let honest = clock_floor(NOW - 3) + (hour << CLOCK_SHIFT);
        assert_eq!(tokens.take_in_floor(honest, NOW - 3, NOW), Ok(()));
        assert_eq!(tokens.lead_ms(), hour);
        let before = tokens;
        // An honest floor, but sent "in 1970": it would lead the clock by 56 years.
        assert!(tokens.take_in_floor(honest, 0, NOW).is_err());
        // Sent "in 2200", with that clock's floor: beyond our ceiling.
        let year_2200 = 7_258_118_400_000;
        assert!(tokens
            .take_in_floor(clock_floor(year_2200), year_2200, NOW)
            .is_err());
        assert!(tokens.take_in_floor(MAX_TOKEN, NOW, NOW).is_err());
        assert_eq!(tokens, before, "refused floors change nothing");
    }

    #[test]
    fn a_saved_counter_beyond_the_bounds_comes_back_at_the_clocks_floor() {
        let mut tokens = TokenCounter::new();
        let poisoned_lead = MAX_TOKEN - clock_floor(NOW);
        assert!(tokens.take_in_saved(MAX_TOKEN, poisoned_lead, NOW).is_err());
        assert_eq!(tokens, TokenCounter::new());
        assert_eq!(tokens.next_token(NOW), Ok(clock_floor(NOW)));
        // A lead beyond the bound is left out, an honest last token is still taken in.
        let mut tokens = TokenCounter::new();
        let honest_last = clock_floor(NOW - 5000);
        assert!(tokens
            .take_in_saved(honest_last, poisoned_lead, NOW)
            .is_err());
        assert_eq!((tokens.last(), tokens.lead()), (honest_last, 0));
    }

    #[test]
    fn a_saved_lead_of_any_honest_size_comes_back_even_to_a_fresh_counter() {
        let mut before = TokenCounter::new();
        for promotion in 0..100_000 {
            before.promote(NOW + promotion, DEFAULT_SPLIT_ALLOWANCE_MS);
        }
        let saved = token(&mut before, NOW + 100_000);
        let mut restarted = TokenCounter::new();
        let restored = restarted.take_in_saved(saved, before.lead(), NOW + 200_000);
        assert_eq!(restored, Ok(()));
        assert_eq!(restarted.lead(), before.lead());
        assert!(token(&mut restarted, NOW + 200_000) > saved);
    }

    #[test]
    fn a_hundred_thousand_promotions_in_a_row_still_leave_centuries_of_tokens() {
        let mut tokens = TokenCounter::new();
        let mut previous = 0;
        for promotion in 0..100_000i64 {
            tokens.promote(NOW + promotion, DEFAULT_SPLIT_ALLOWANCE_MS);
            let next = token(&mut tokens, NOW + promotion);
            assert!(next > previous);
            previous = next;
        }
        assert_eq!(
            tokens.lead_ms() / YEAR_MS,
            1,
            "under two years of clock spent"
        );
        let left_ms = (MAX_TOKEN - tokens.last()) >> CLOCK_SHIFT;
        assert!(left_ms / YEAR_MS > 200, "{} years left", left_ms / YEAR_MS);
    }
}
