//! Channel history streams (PROTOCOL.md §4). Filled by the history issue.
