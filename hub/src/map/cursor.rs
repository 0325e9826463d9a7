//! State-page cursors: `<channel tag>:<last key of the page>`. The tag (8 hex digits of a
//! 32-bit FNV-1a hash of the channel name) makes a cursor from another channel a clear
//! error instead of a page of the wrong map; the key is where the next page continues (keys
//! are paged in byte order, so a key removed meanwhile does not lose the place).

use thiserror::Error;

/// A cursor that was not made for this channel, or is not a cursor.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[error("the cursor does not belong to this channel")]
pub struct CursorError;

fn tag(channel: &str) -> u32 {
    channel.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

/// The cursor of the page that ended at `last_key`.
pub fn encode_cursor(channel: &str, last_key: &str) -> String {
    format!("{:08x}:{last_key}", tag(channel))
}

/// The key a cursor continues after; `""` (the first page) is `None`.
pub fn decode_cursor<'a>(channel: &str, cursor: &'a str) -> Result<Option<&'a str>, CursorError> {
    if cursor.is_empty() {
        return Ok(None);
    }
    let (tagged, key) = cursor.split_once(':').ok_or(CursorError)?;
    let expected = format!("{:08x}", tag(channel));
    if tagged != expected {
        return Err(CursorError);
    }
    Ok(Some(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_bound_to_their_channel() {
        let cursor = encode_cursor("map:a", "key:with:colons");
        assert_eq!(decode_cursor("map:a", &cursor), Ok(Some("key:with:colons")));
        assert_eq!(decode_cursor("map:b", &cursor), Err(CursorError));
        assert_eq!(decode_cursor("map:a", ""), Ok(None));
        assert_eq!(decode_cursor("map:a", "no-tag"), Err(CursorError));
    }
}
