//! Round trips of the offer's key line (`holepunch_core::ice::key`).

use holepunch_core::ice::key::{Fingerprint, key_line, parse_key_line};
use proptest::prelude::*;

proptest! {
    #[test]
    fn any_fingerprint_round_trips_through_its_line(bytes in any::<[u8; 32]>()) {
        let fp = Fingerprint(bytes);
        prop_assert_eq!(parse_key_line(&key_line(&fp)), Some(Ok(fp)));
        prop_assert_eq!(fp.to_string().to_uppercase().parse::<Fingerprint>(), Ok(fp));
    }

    #[test]
    fn arbitrary_lines_never_panic(line in ".{0,100}") {
        if let Some(Ok(fp)) = parse_key_line(&line) {
            prop_assert_eq!(parse_key_line(&key_line(&fp)), Some(Ok(fp)));
        }
    }
}
