//! Energy-based voice-activity detection for 16 kHz audio in 30 ms frames.
//!
//! A frame is speech when its level is well above the noise floor and above an absolute minimum.
//! The floor is the quietest frame of the last three seconds (minimum statistics): speech always
//! has dips between syllables, while steady line noise or hum has none and so becomes the floor. A segment starts after a few consecutive speech frames and ends after a
//! stretch of non-speech (the hang-over), so pauses between words do not split an utterance.

/// Samples per frame at 16 kHz (30 ms).
pub const FRAME: usize = 480;

#[derive(Debug, Clone)]
pub struct VadConfig {
    /// dB above the noise floor that counts as speech.
    pub threshold_db: f32,
    /// Frames below this level (dBFS) are never speech.
    pub min_level_db: f32,
    /// Consecutive speech frames that open a segment.
    pub start_frames: usize,
    /// Non-speech frames that close one.
    pub end_frames: usize,
}

impl Default for VadConfig {
    fn default() -> Self {
        VadConfig {
            threshold_db: 9.0,
            min_level_db: -42.0,
            start_frames: 3,
            end_frames: 20,
        }
    }
}

/// What one frame did to the detector's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VadEvent {
    /// Nothing changed.
    None,
    /// Speech began `frames_back` frames ago (the opening frames are part of it).
    Start { frames_back: usize },
    /// Speech ended `frames_back` frames ago (the hang-over frames are not speech).
    End { frames_back: usize },
}

/// Frames of history the noise floor is the minimum of (3 s).
const FLOOR_WINDOW: usize = 100;
/// The floor assumed before the window has filled (a quiet line).
const INITIAL_FLOOR_DB: f32 = -60.0;

#[derive(Debug, Clone)]
pub struct Vad {
    config: VadConfig,
    levels: std::collections::VecDeque<f32>,
    noise_db: f32,
    in_speech: bool,
    run: usize,
}

/// The level of a frame in dBFS (RMS).
pub fn level_db(frame: &[f32]) -> f32 {
    if frame.is_empty() {
        return -100.0;
    }
    let energy = frame.iter().map(|s| s * s).sum::<f32>() / frame.len() as f32;
    10.0 * energy.max(1e-10).log10()
}

impl Vad {
    pub fn new(config: VadConfig) -> Vad {
        Vad {
            config,
            levels: std::collections::VecDeque::with_capacity(FLOOR_WINDOW + 1),
            noise_db: INITIAL_FLOOR_DB,
            in_speech: false,
            run: 0,
        }
    }

    pub fn in_speech(&self) -> bool {
        self.in_speech
    }

    pub fn noise_floor_db(&self) -> f32 {
        self.noise_db
    }

    /// Whether a frame at this level is speech now (without changing state).
    fn is_speech(&self, db: f32) -> bool {
        db > self.config.min_level_db && db > self.noise_db + self.config.threshold_db
    }

    /// Feeds one frame of `FRAME` samples.
    pub fn push(&mut self, frame: &[f32]) -> VadEvent {
        let db = level_db(frame);
        self.levels.push_back(db);
        if self.levels.len() > FLOOR_WINDOW {
            self.levels.pop_front();
        }
        let window_min = self.levels.iter().copied().fold(f32::INFINITY, f32::min);
        // Until three seconds have been seen, a quiet line is assumed as well, so speech at
        // the very start of a call is found.
        self.noise_db = if self.levels.len() < FLOOR_WINDOW {
            window_min.min(INITIAL_FLOOR_DB)
        } else {
            window_min
        };
        let speech = self.is_speech(db);
        if self.in_speech {
            if speech {
                self.run = 0;
            } else {
                self.run += 1;
                if self.run >= self.config.end_frames {
                    self.in_speech = false;
                    let back = self.run;
                    self.run = 0;
                    return VadEvent::End { frames_back: back };
                }
            }
        } else if speech {
            self.run += 1;
            if self.run >= self.config.start_frames {
                self.in_speech = true;
                let back = self.run;
                self.run = 0;
                return VadEvent::Start { frames_back: back };
            }
        } else {
            self.run = 0;
        }
        VadEvent::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, amp: f32, seed: &mut u32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                *seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((*seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 2.0 * amp
            })
            .collect()
    }

    fn voiced(n: usize) -> Vec<f32> {
        // A 150 Hz buzz with harmonics, amplitude-modulated like syllables.
        (0..n)
            .map(|i| {
                let t = i as f32 / 16_000.0;
                let env = 0.6 + 0.4 * (2.0 * std::f32::consts::PI * 4.0 * t).sin();
                env * 0.3
                    * ((2.0 * std::f32::consts::PI * 150.0 * t).sin()
                        + 0.5 * (2.0 * std::f32::consts::PI * 300.0 * t).sin())
            })
            .collect()
    }

    fn run(vad: &mut Vad, audio: &[f32]) -> Vec<(usize, VadEvent)> {
        audio
            .chunks_exact(FRAME)
            .enumerate()
            .filter_map(|(i, f)| match vad.push(f) {
                VadEvent::None => None,
                e => Some((i, e)),
            })
            .collect()
    }

    #[test]
    fn finds_speech_between_quiet_stretches_on_a_noisy_line() {
        let mut seed = 7;
        let mut audio = noise(16_000, 0.005, &mut seed);
        let speech: Vec<f32> = voiced(32_000)
            .iter()
            .zip(noise(32_000, 0.005, &mut seed))
            .map(|(a, b)| a + b)
            .collect();
        audio.extend(speech);
        audio.extend(noise(24_000, 0.005, &mut seed));
        let mut vad = Vad::new(VadConfig::default());
        let events = run(&mut vad, &audio);
        assert_eq!(events.len(), 2, "{events:?}");
        let (start_frame, VadEvent::Start { frames_back }) = events[0] else {
            panic!("{events:?}")
        };
        let start = start_frame + 1 - frames_back;
        assert!(
            (33..=36).contains(&start),
            "speech starts at frame 33: {start}"
        );
        let (end_frame, VadEvent::End { frames_back }) = events[1] else {
            panic!("{events:?}")
        };
        let end = end_frame + 1 - frames_back;
        assert!((98..=102).contains(&end), "speech ends at frame 100: {end}");
    }

    #[test]
    fn silence_and_steady_noise_are_not_speech() {
        let mut vad = Vad::new(VadConfig::default());
        assert!(run(&mut vad, &vec![0.0; 16_000 * 3]).is_empty());
        let mut seed = 3;
        let mut vad = Vad::new(VadConfig::default());
        // Loud steady hiss from the first frame: the floor reaches it within three seconds; any
        // early detection must close and nothing must open afterwards.
        let events = run(&mut vad, &noise(16_000 * 6, 0.2, &mut seed));
        assert!(events.len() <= 2, "{events:?}");
        assert!(!vad.in_speech());
        assert!(events.iter().all(|(i, _)| *i < 120), "{events:?}");
    }
}
