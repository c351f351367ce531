//! Durations as Kubernetes writes them: Go's `time.ParseDuration` syntax, which `metav1.Duration`
//! and CEL's `duration()` read: `2h`, `1h30m`, `90s`, `500ms`, `1.5h`, `1m30.5s`; units `h`, `m`,
//! `s`, `ms`, `us` (or `µs`), `ns`; a bare `0`. Unlike Go, no sign: no field of ours takes a
//! negative duration.
//!
//! One parser ([`parse`]) and, for each duration field, one [`DurationField`] holding its bounds:
//! the CRD's CEL rules are generated from it and the reconcilers convert through it, so what the
//! API server accepts is exactly what is reconciled. kube-core's `Duration` is not used: it reads
//! numbers with `f64::parse` (it accepts `1e3s`, `inf`-like forms and an empty string) and
//! panics on overflow.

use std::time::Duration;

use kube::core::{Message, Rule};

/// Longest duration text accepted (the CRD's `maxLength`; it also bounds the CEL rules' cost).
pub const MAX_LENGTH: usize = 64;

/// What [`parse`] accepts, as an RE2 regular expression for CEL's `matches()` (no backslash: CEL
/// string literals would need it escaped). It accepts everything `parse` accepts; the only text
/// it accepts that `parse` refuses is a value above [`MAX`], which the range rule refuses.
pub const PATTERN: &str = "^(0|(([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$";

/// Examples for messages and field docs.
pub const EXAMPLES: &str = "90s, 5m, 1h30m, 1.5h or 500ms";

/// The longest duration Go (and so the API server) can hold: `i64::MAX` nanoseconds.
pub const MAX: Duration = Duration::from_nanos(i64::MAX as u64);

/// Why a text is not a duration. Each says what is wrong with the text; the caller names the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("it is empty")]
    Empty,
    #[error("it is longer than {MAX_LENGTH} characters")]
    TooLong,
    #[error("it has a sign: durations here are never negative")]
    Signed,
    #[error("'{0}' is where a number should start")]
    NotANumber(char),
    #[error("'.' has no digit on either side")]
    NoDigits,
    #[error("a number has no unit")]
    MissingUnit,
    #[error("'{0}' is not a unit")]
    UnknownUnit(String),
    #[error("it is above the longest duration, {}", format(MAX))]
    Overflow,
}

const NANOS_PER_UNIT: [(&str, u64); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000), // U+00B5 micro sign
    ("μs", 1_000), // U+03BC Greek small letter mu
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

const LIMIT: u64 = 1 << 63;

/// Parses a duration as Go's `time.ParseDuration` does (the same digits, units, fractions and
/// overflow), without a sign.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    if text.chars().count() > MAX_LENGTH {
        return Err(DurationError::TooLong);
    }
    if text.starts_with(['-', '+']) {
        return Err(DurationError::Signed);
    }
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = text;
    // `None` once the sum passed the limit; scanning goes on, so a text that is also
    // ungrammatical is refused for its syntax (as the schema pattern refuses it), not its size.
    let mut total: Option<u64> = Some(0);
    while let Some(first) = rest.chars().next() {
        if first != '.' && !first.is_ascii_digit() {
            return Err(DurationError::NotANumber(first));
        }
        let (whole, after) = leading_int(rest);
        let had_whole = after.len() != rest.len();
        rest = after;
        let (mut fraction, mut scale, mut had_fraction) = (0, 1.0, false);
        if let Some(after_point) = rest.strip_prefix('.') {
            let after;
            (fraction, scale, after) = leading_fraction(after_point);
            had_fraction = after.len() != after_point.len();
            rest = after;
        }
        if !had_whole && !had_fraction {
            return Err(DurationError::NoDigits);
        }
        let unit_len = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        if unit_len == 0 {
            return Err(DurationError::MissingUnit);
        }
        let (unit, after) = rest.split_at(unit_len);
        rest = after;
        let nanos = NANOS_PER_UNIT
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, nanos)| *nanos)
            .ok_or_else(|| DurationError::UnknownUnit(unit.to_string()))?;
        let value = whole.filter(|w| *w <= LIMIT / nanos).and_then(|whole| {
            // As Go does: a float64 is exact to the nanosecond for fractions of an hour.
            let part = (fraction as f64 * (nanos as f64 / scale)) as u64;
            Some(whole * nanos + if fraction > 0 { part } else { 0 }).filter(|v| *v <= LIMIT)
        });
        total = total
            .zip(value)
            .and_then(|(t, v)| t.checked_add(v))
            .filter(|t| *t <= LIMIT);
    }
    total
        .filter(|t| *t < LIMIT)
        .map(Duration::from_nanos)
        .ok_or(DurationError::Overflow)
}

/// The leading `[0-9]*` of `text` (`None` past 2^63) and what follows.
fn leading_int(text: &str) -> (Option<u64>, &str) {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let value = text.bytes().take(digits).try_fold(0u64, |value, digit| {
        value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(digit - b'0')))
            .filter(|v| *v <= LIMIT)
    });
    (value, &text[digits..])
}

/// The leading `[0-9]*` of a fraction as `value / scale`; digits beyond 2^63 are dropped, as Go
/// drops them (they are below a nanosecond).
fn leading_fraction(text: &str) -> (u64, f64, &str) {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (mut value, mut scale) = (0u64, 1.0f64);
    for digit in text.bytes().take(digits) {
        if value > (LIMIT - 1) / 10 {
            break;
        }
        let next = value * 10 + u64::from(digit - b'0');
        if next > LIMIT {
            break;
        }
        value = next;
        scale *= 10.0;
    }
    (value, scale, &text[digits..])
}

/// Writes `duration` as whole hours, minutes, seconds, milliseconds, microseconds and nanoseconds,
/// leaving out the zero ones (`1h30m`, `1s500ms`, `0s`): [`parse`] reads it back exactly.
pub fn format(duration: Duration) -> String {
    let mut nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    let mut text = String::new();
    for (unit, per) in NANOS_PER_UNIT.iter().rev() {
        if unit.starts_with(['µ', 'μ']) {
            continue;
        }
        let per = u128::from(*per);
        if nanos >= per {
            text.push_str(&format!("{}{unit}", nanos / per));
            nanos %= per;
        }
    }
    text
}

/// The milliseconds of `duration`, truncated as CEL's `getMilliseconds()` truncates.
pub fn whole_millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A duration field of a spec and its bounds. The CRD's rules ([`DurationField::rules`]) and the
/// reconciler ([`DurationField::parse`]) come from this one value.
#[derive(Clone, Copy, Debug)]
pub struct DurationField {
    /// The field's path in the spec, as messages name it (`spec.transactionTimeout`).
    pub path: &'static str,
    /// Shortest value accepted.
    pub min: Duration,
    /// Longest value accepted.
    pub max: Duration,
    /// Why the bounds are what they are, for the message when a value is outside them.
    pub why: &'static str,
}

/// Kafka's `transaction.timeout.ms` and the worker's intervals are 32-bit counts of milliseconds.
pub const MAX_KAFKA_MILLIS: Duration = Duration::from_millis(i32::MAX as u64);

impl DurationField {
    /// The field's name without its parents (`transactionTimeout`).
    pub fn name(&self) -> &'static str {
        self.path.rsplit('.').next().unwrap_or(self.path)
    }

    /// Parses the field's value and checks its bounds; the error names the field, the value and
    /// what to write instead.
    pub fn parse(&self, text: &str) -> Result<Duration, String> {
        let duration = parse(text).map_err(|e| {
            format!(
                "{} '{text}' is not a duration: {e}. Write e.g. {EXAMPLES} (units h, m, s, ms, us, ns)",
                self.path
            )
        })?;
        if duration < self.min || duration > self.max {
            return Err(format!(
                "{} '{text}' must be between {} and {}: {}",
                self.path,
                format(self.min),
                format(self.max),
                self.why
            ));
        }
        Ok(duration)
    }

    /// [`DurationField::parse`] in whole milliseconds (truncated, as CEL's `getMilliseconds()`).
    pub fn parse_millis(&self, text: &str) -> Result<u64, String> {
        self.parse(text).map(whole_millis)
    }

    /// The field's CEL rules: its syntax, then its bounds (checked only on valid syntax, so a
    /// mistyped value gets one message, the syntax one).
    pub fn rules(&self) -> [Rule; 2] {
        let name = self.name();
        [
            Rule::new(format!("self.matches('{PATTERN}')")).message(Message::Message(format!(
                "{name} must be a duration such as {EXAMPLES}: numbers with units h, m, s, ms, us or ns, no sign"
            ))),
            Rule::new(format!(
                "!self.matches('{PATTERN}') || (duration(self) >= duration('{}') && duration(self) <= duration('{}'))",
                format(self.min),
                format(self.max)
            ))
            .message(Message::Message(format!(
                "{name} must be between {} and {}: {}",
                format(self.min),
                format(self.max),
                self.why
            ))),
        ]
    }

    /// The first rule of [`DurationField::rules`], for `#[x_kube(validation = ...)]`.
    pub fn syntax_rule(&self) -> Rule {
        let [syntax, _] = self.rules();
        syntax
    }

    /// The second rule of [`DurationField::rules`], for `#[x_kube(validation = ...)]`.
    pub fn range_rule(&self) -> Rule {
        let [_, range] = self.rules();
        range
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Result<Duration, DurationError> {
        Ok(Duration::from_millis(n))
    }

    #[test]
    fn whole_numbers_with_each_unit_are_read() {
        assert_eq!(parse("2h"), ms(7_200_000));
        assert_eq!(parse("5m"), ms(300_000));
        assert_eq!(parse("90s"), ms(90_000));
        assert_eq!(parse("500ms"), ms(500));
        assert_eq!(parse("7us"), Ok(Duration::from_micros(7)));
        assert_eq!(parse("7µs"), Ok(Duration::from_micros(7)));
        assert_eq!(parse("7μs"), Ok(Duration::from_micros(7)));
        assert_eq!(parse("7ns"), Ok(Duration::from_nanos(7)));
    }

    #[test]
    fn units_combine_as_kubernetes_writes_them() {
        assert_eq!(parse("1h30m"), ms(5_400_000));
        assert_eq!(parse("1m30s"), ms(90_000));
        assert_eq!(parse("1s500ms"), ms(1_500));
        assert_eq!(parse("1h0m0s"), ms(3_600_000));
        assert_eq!(parse("30s1h"), ms(3_630_000), "units in any order, as Go");
    }

    #[test]
    fn decimal_fractions_are_read_as_go_reads_them() {
        assert_eq!(parse("1.5h"), ms(5_400_000));
        assert_eq!(parse("1m30.5s"), ms(90_500));
        assert_eq!(parse(".5s"), ms(500));
        assert_eq!(parse("1.s"), ms(1_000));
        assert_eq!(parse("0.1ns"), Ok(Duration::ZERO));
        assert_eq!(
            parse("1.0000000000000000000001s"),
            ms(1_000),
            "digits past a nanosecond are dropped"
        );
    }

    #[test]
    fn zero_is_read_with_or_without_a_unit() {
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
        assert_eq!(parse("000ms"), Ok(Duration::ZERO));
    }

    #[test]
    fn empty_text_is_refused() {
        assert_eq!(parse(""), Err(DurationError::Empty));
    }

    #[test]
    fn a_number_without_a_unit_is_refused() {
        assert_eq!(parse("5"), Err(DurationError::MissingUnit));
        assert_eq!(parse("1h30"), Err(DurationError::MissingUnit));
    }

    #[test]
    fn a_sign_is_refused() {
        assert_eq!(parse("-1s"), Err(DurationError::Signed));
        assert_eq!(parse("+1s"), Err(DurationError::Signed));
        assert_eq!(parse("-0"), Err(DurationError::Signed));
    }

    #[test]
    fn units_go_does_not_know_are_refused() {
        assert_eq!(parse("1d"), Err(DurationError::UnknownUnit("d".into())));
        assert_eq!(parse("1S"), Err(DurationError::UnknownUnit("S".into())));
        assert_eq!(parse("1 s"), Err(DurationError::UnknownUnit(" s".into())));
        assert_eq!(parse("1hm"), Err(DurationError::UnknownUnit("hm".into())));
    }

    #[test]
    fn text_that_is_no_number_is_refused() {
        assert_eq!(parse("s"), Err(DurationError::NotANumber('s')));
        assert_eq!(parse(" 1s"), Err(DurationError::NotANumber(' ')));
        assert_eq!(parse(".s"), Err(DurationError::NoDigits));
        assert_eq!(parse("1s."), Err(DurationError::NoDigits));
        assert_eq!(parse("1e3s"), Err(DurationError::UnknownUnit("e".into())));
    }

    #[test]
    fn durations_beyond_go_s_range_are_refused() {
        assert_eq!(parse("2562047h47m16.854775807s"), Ok(MAX));
        assert_eq!(
            parse("2562047h47m16.854775808s"),
            Err(DurationError::Overflow)
        );
        assert_eq!(parse("2562048h"), Err(DurationError::Overflow));
        assert_eq!(
            parse("99999999999999999999ns"),
            Err(DurationError::Overflow)
        );
        assert_eq!(
            parse(&"9".repeat(MAX_LENGTH + 1)),
            Err(DurationError::TooLong)
        );
        // Found by the schema-pattern property: too large *and* ungrammatical is a syntax error,
        // as the pattern (which knows nothing of size) refuses it.
        assert_eq!(parse("3000000h0h0"), Err(DurationError::MissingUnit));
        assert_eq!(
            parse("99999999999999999999ns1d"),
            Err(DurationError::UnknownUnit("d".into()))
        );
    }

    #[test]
    fn format_writes_whole_units_without_zeros() {
        assert_eq!(format(Duration::ZERO), "0s");
        assert_eq!(format(Duration::from_millis(5_400_000)), "1h30m");
        assert_eq!(format(Duration::from_millis(1_500)), "1s500ms");
        assert_eq!(format(MAX_KAFKA_MILLIS), "596h31m23s647ms");
        assert_eq!(format(Duration::from_nanos(1_001)), "1us1ns");
    }

    #[test]
    fn a_field_s_error_names_the_field_and_what_to_write() {
        let field = DurationField {
            path: "spec.transactionTimeout",
            min: Duration::from_millis(1),
            max: MAX_KAFKA_MILLIS,
            why: "Kafka's transaction.timeout.ms is a 32-bit count of milliseconds",
        };
        assert_eq!(field.parse_millis("2h"), Ok(7_200_000));
        assert_eq!(
            field.parse_millis("1.5ms"),
            Ok(1),
            "truncated as CEL's getMilliseconds()"
        );
        let wrong = field.parse("1d").err().unwrap_or_default();
        assert!(
            wrong.starts_with("spec.transactionTimeout '1d' is not a duration: 'd' is not a unit"),
            "{wrong}"
        );
        let zero = field.parse("0s").err().unwrap_or_default();
        assert!(
            zero.contains("must be between 1ms and 596h31m23s647ms"),
            "{zero}"
        );
        assert!(field.parse("597h").is_err());
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Text near the grammar: digits, points, unit letters, signs and a few strangers.
    fn duration_like() -> impl Strategy<Value = String> {
        let alphabet = "0123456789.hmsunµμ+- dSe".chars().collect::<Vec<_>>();
        proptest::collection::vec(proptest::sample::select(alphabet), 0..24)
            .prop_map(String::from_iter)
    }

    /// Text the grammar accepts, numbers of any size (overflowing ones too) included.
    fn grammatical() -> impl Strategy<Value = String> {
        let digits = |min| {
            proptest::collection::vec(
                proptest::sample::select(('0'..='9').collect::<Vec<_>>()),
                min..13,
            )
            .prop_map(String::from_iter)
        };
        let number = prop_oneof![
            digits(1),
            (digits(1), digits(0)).prop_map(|(w, f)| format!("{w}.{f}")),
            digits(1).prop_map(|f| format!(".{f}")),
        ];
        let unit = proptest::sample::select(vec!["ns", "us", "µs", "μs", "ms", "s", "m", "h"]);
        prop_oneof![
            1 => Just("0".to_string()),
            20 => proptest::collection::vec((number, unit), 1..5).prop_map(|parts| {
                parts.into_iter().map(|(n, u)| format!("{n}{u}")).collect::<String>()
            }),
        ]
    }

    /// [`PATTERN`] compiled once (Rust's regex reads this RE2 expression as RE2 does).
    static SCHEMA_PATTERN: std::sync::LazyLock<Result<regex::Regex, regex::Error>> =
        std::sync::LazyLock::new(|| regex::Regex::new(PATTERN));

    fn max_duration() -> impl Strategy<Value = Duration> {
        (0..=i64::MAX as u64).prop_map(Duration::from_nanos)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

        #[test]
        fn format_then_parse_gives_the_same_duration(d in max_duration()) {
            prop_assert_eq!(parse(&format(d)), Ok(d));
        }

        #[test]
        fn parse_never_panics_on_any_text(text in any::<String>()) {
            let _ = parse(&text);
        }

        #[test]
        fn parse_never_panics_on_text_near_the_grammar(text in duration_like()) {
            let _ = parse(&text);
        }

        #[test]
        fn the_schema_pattern_accepts_exactly_what_parse_accepts(
            text in prop_oneof![duration_like(), grammatical(), any::<String>()]
        ) {
            let pattern = SCHEMA_PATTERN.as_ref();
            prop_assert!(pattern.is_ok(), "{:?}", pattern.err());
            let schema_accepts = pattern.is_ok_and(|p| p.is_match(&text))
                && text.chars().count() <= MAX_LENGTH;
            // Above MAX the pattern matches and the range rule (CEL's duration()) refuses.
            let parse_accepts = !matches!(
                parse(&text),
                Err(e) if e != DurationError::Overflow
            );
            prop_assert_eq!(schema_accepts, parse_accepts, "{:?}: {:?}", text, parse(&text));
        }

        #[test]
        fn whole_numbers_in_each_unit_add_up(
            h in 0u64..2_000_000, m in 0u64..100_000, s in 0u64..100_000, ms in 0u64..100_000,
        ) {
            let expected = Duration::from_secs(h * 3600 + m * 60 + s) + Duration::from_millis(ms);
            prop_assert_eq!(parse(&format!("{h}h{m}m{s}s{ms}ms")), Ok(expected));
        }

        #[test]
        fn a_fraction_of_a_unit_is_within_a_nanosecond_of_its_value(
            whole in 0u64..1_000_000, thousandths in 0u64..1000,
        ) {
            // 1.234s is 1s 234ms exactly; Go's float arithmetic may lose at most a nanosecond.
            let parsed = parse(&format!("{whole}.{thousandths:03}s"));
            let exact = Duration::from_secs(whole) + Duration::from_millis(thousandths);
            prop_assert!(
                parsed.as_ref().is_ok_and(|d| exact.abs_diff(*d) <= Duration::from_nanos(1)),
                "{parsed:?} against {exact:?}"
            );
        }
    }
}
