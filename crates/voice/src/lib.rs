//! Voice: audio decoding and resampling, voice-activity detection, whisper transcription and
//! streaming call sessions. Empty until the voice issue; depends on no other crate of ours.
