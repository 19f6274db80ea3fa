//! console: berth's web console, assets embedded in the binary and served at `/ui`. It talks to the API like any
//! client and must never read storage or hold a privilege the user's token lacks.
