//! Fossil delta encoding of publication payloads (PROTOCOL.md §4.6). Filled by the history issue.
