//! Dice: `\roll NdM` (default `1d6`) says the roll in the channel; bad input gets a private
//! usage hint.

use decentd_plugin::{export_plugin, random, say, tell, Action, CommandEvent, Plugin};

#[derive(Default)]
pub struct Dice;

/// `NdM` with 1 ≤ N ≤ 100 and 2 ≤ M ≤ 1000.
pub fn parse(spec: &str) -> Option<(u32, u32)> {
    let (n, m) = spec
        .to_ascii_lowercase()
        .split_once('d')
        .map(|(n, m)| (n.to_owned(), m.to_owned()))?;
    let n: u32 = if n.is_empty() { 1 } else { n.parse().ok()? };
    let m: u32 = m.parse().ok()?;
    ((1..=100).contains(&n) && (2..=1000).contains(&m)).then_some((n, m))
}

impl Plugin for Dice {
    fn command(&mut self, command: &CommandEvent) -> Vec<Action> {
        let spec = command.args.first().map(String::as_str).unwrap_or("1d6");
        let Some((n, m)) = parse(spec) else {
            return vec![tell(
                command.user.uuid.clone(),
                "usage: \\roll NdM, e.g. \\roll 2d6 (1-100 dice, 2-1000 sides)",
            )];
        };
        let rolls: Vec<u32> = (0..n)
            .map(|_| (random() % u64::from(m)) as u32 + 1)
            .collect();
        let total: u32 = rolls.iter().sum();
        let shown: Vec<String> = rolls.iter().map(u32::to_string).collect();
        vec![say(format!(
            "{} rolled {n}d{m}: {} = **{total}**",
            command.user.name,
            shown.join(" + ")
        ))]
    }
}

export_plugin!(Dice);

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn parses_dice() {
        assert_eq!(parse("2d6"), Some((2, 6)));
        assert_eq!(parse("d20"), Some((1, 20)));
        assert_eq!(parse("0d6"), None);
        assert_eq!(parse("2x6"), None);
        assert_eq!(parse("101d6"), None);
    }
}
