//! Value encoding: one format-version byte, then the postcard encoding of the record.
//!
//! postcard is not self-describing, so any change to a record's fields must bump
//! `FORMAT_VERSION` and teach `decode` to read the old version.

use serde::{de::DeserializeOwned, Serialize};

use super::StoreError;

/// The current format version of stored values.
pub const FORMAT_VERSION: u8 = 1;

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    postcard::to_extend(value, vec![FORMAT_VERSION]).map_err(StoreError::Encode)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&FORMAT_VERSION, rest)) => postcard::from_bytes(rest).map_err(StoreError::Decode),
        Some((&other, _)) => Err(StoreError::UnknownFormat(other)),
        None => Err(StoreError::UnknownFormat(0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_behind_a_version_byte() {
        let bytes = encode(&("alice", 7u64, Some(true))).unwrap();
        assert_eq!(bytes[0], FORMAT_VERSION);
        let back: (String, u64, Option<bool>) = decode(&bytes).unwrap();
        assert_eq!(back, ("alice".to_owned(), 7, Some(true)));
    }

    #[test]
    fn unknown_versions_are_refused() {
        let mut bytes = encode(&1u8).unwrap();
        bytes[0] = 99;
        assert!(matches!(
            decode::<u8>(&bytes),
            Err(StoreError::UnknownFormat(99))
        ));
    }
}
