//! NM multi-frame reorganisation (PS3.3 C.8.4.8). Filled in by the NM issue.
