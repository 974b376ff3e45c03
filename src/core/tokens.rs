//! The server-wide fencing-token counter.
//!
//! Every new acquisition of any lock gets `last + 1`. Tokens stay below 2^53 so JavaScript
//! clients read them exactly. The top bits above `SEQUENCE_BITS` are a failover epoch: a
//! promoted replica starts a new epoch, so its tokens exceed every token its old master could
//! have handed out after the replica last heard from it.

/// Bits of a token that count acquisitions within one epoch (3.5e13 acquisitions).
pub const SEQUENCE_BITS: u32 = 45;
/// The largest token ever handed out: 2^53 - 1, the largest integer a double holds exactly.
pub const MAX_TOKEN: u64 = (1 << 53) - 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokensExhausted;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TokenCounter {
    last: u64,
}

impl TokenCounter {
    pub const fn new() -> Self {
        Self { last: 0 }
    }

    /// The last token handed out (0 before the first).
    pub fn last(&self) -> u64 {
        self.last
    }

    /// The token for a new acquisition.
    pub fn next_token(&mut self) -> Result<u64, TokensExhausted> {
        if self.last >= MAX_TOKEN {
            return Err(TokensExhausted);
        }
        self.last += 1;
        Ok(self.last)
    }

    /// Raises the counter to a token seen in loaded or replicated data, so that no later
    /// token can repeat or undercut it.
    pub fn observe(&mut self, seen: u64) {
        self.last = self.last.max(seen.min(MAX_TOKEN));
    }

    /// Moves to the next epoch: the next token exceeds every token of the current epoch.
    pub fn start_new_epoch(&mut self) {
        let next_epoch_start = ((self.last >> SEQUENCE_BITS) + 1) << SEQUENCE_BITS;
        self.last = (next_epoch_start - 1).min(MAX_TOKEN);
    }

    pub fn epoch(token: u64) -> u64 {
        token >> SEQUENCE_BITS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_start_at_one_and_rise() {
        let mut tokens = TokenCounter::new();
        assert_eq!(tokens.next_token(), Ok(1));
        assert_eq!(tokens.next_token(), Ok(2));
        assert_eq!(tokens.last(), 2);
    }

    #[test]
    fn observing_a_higher_token_raises_the_counter_and_a_lower_one_does_not() {
        let mut tokens = TokenCounter::new();
        tokens.observe(41);
        assert_eq!(tokens.next_token(), Ok(42));
        tokens.observe(7);
        assert_eq!(tokens.next_token(), Ok(43));
    }

    #[test]
    fn tokens_stop_below_two_to_the_53() {
        let mut tokens = TokenCounter::new();
        tokens.observe(MAX_TOKEN - 1);
        assert_eq!(tokens.next_token(), Ok(MAX_TOKEN));
        assert_eq!(tokens.next_token(), Err(TokensExhausted));
        assert_eq!(tokens.last(), MAX_TOKEN);
        tokens.observe(u64::MAX);
        assert_eq!(tokens.last(), MAX_TOKEN);
    }

    #[test]
    fn a_new_epoch_outranks_every_token_of_the_old_one() {
        let mut tokens = TokenCounter::new();
        tokens.observe(12345);
        tokens.start_new_epoch();
        let first = 1 << SEQUENCE_BITS;
        assert_eq!(tokens.next_token(), Ok(first));
        assert_eq!(TokenCounter::epoch(first), 1);
    }
}
