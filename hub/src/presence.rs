//! Channel presence sets (PROTOCOL.md §2.9). Filled by the history issue.
