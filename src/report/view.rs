//! What the page shows, worked out from a run's files: header facts, people cards, timeline
//! lanes, charts and thumbnails, all as plain values for the template. Everything here is
//! deterministic (the same folder gives the same page) and bounded: crops are shrunk and
//! capped by a byte budget, lanes past the first few are folded.

use std::collections::{BTreeMap, HashMap};

use base64::Engine;

use super::charts::{self, bars, bars_to, colour, histogram, line, mmss, mmss_tenths, n, short, Bars, Columns, Line, Tick, WIDTH};
use super::load::{Person, RunFiles, Track};
use crate::people::{intervals, RunFacts, Seen};
use crate::run_dir;

/// Lanes drawn open in the timeline; the rest are folded under a `<details>`.
const OPEN_LANES: usize = 12;
/// People in the screen-time chart.
const SCREEN_BARS: usize = 30;
/// People in the contact sheet, and track crops per person there.
const CONTACT_PEOPLE: usize = 40;
const CONTACT_TRACKS: usize = 10;
/// Cards shown large; the rest are folded, with a small crop.
const LARGE_CARDS: usize = 40;
/// Bytes of inlined crops (base64) at most, for the cards and for the contact sheet: with the
/// timeline bars of ~6,600 tracks (~0.9 MB) a 48-minute episode's page stays near 2 MB.
const CARD_BUDGET: usize = 700_000;
const CONTACT_BUDGET: usize = 700_000;
/// Timeline geometry: the label gutter and one lane's height.
pub const LANE_LABEL: f64 = 170.0;
pub const LANE: f64 = 18.0;
/// Room below the lanes for the time axis.
const AXIS: f64 = 24.0;

#[derive(Debug)]
pub struct Banner {
    /// `warn`, `error` or `info`: the banner's CSS class.
    pub kind: &'static str,
    pub text: String,
}

#[derive(Debug)]
pub struct Fact {
    pub label: &'static str,
    pub value: String,
}

#[derive(Debug)]
pub struct ModelRow {
    pub name: String,
    pub file: String,
    pub sha256: String,
}

#[derive(Debug)]
pub struct Card {
    pub person_id: u64,
    pub label: String,
    pub named: bool,
    pub colour: String,
    pub img: Option<String>,
    pub screen: String,
    pub pct: String,
    pub tracks: u64,
    pub faces: u64,
    pub shots: usize,
    pub first: String,
    pub last: String,
    pub identity: Option<String>,
}

#[derive(Debug)]
pub struct TBar {
    pub track_id: u64,
    pub x: String,
    pub w: String,
    pub title: String,
}

#[derive(Debug)]
pub struct Lane {
    pub y: String,
    pub label: String,
    /// `label` as drawn in the lane's gutter.
    pub short: String,
    pub colour: String,
    pub bars: Vec<TBar>,
}

#[derive(Debug)]
pub struct Timeline {
    pub open: Vec<Lane>,
    /// Heights of the lanes, and of their SVG with its time axis below.
    pub open_height: String,
    pub open_svg: String,
    pub folded: Vec<Lane>,
    pub folded_height: String,
    pub folded_svg: String,
    /// Shot starts, in plot units.
    pub cuts: Vec<String>,
    pub ticks: Vec<Tick>,
}

#[derive(Debug)]
pub struct Thumb {
    pub img: Option<String>,
    pub caption: String,
}

#[derive(Debug)]
pub struct ContactRow {
    pub label: String,
    pub colour: String,
    pub thumbs: Vec<Thumb>,
    pub more: usize,
}

#[derive(Debug)]
pub struct StageRow {
    pub name: String,
    pub total: String,
    pub p50: String,
    pub p95: String,
    pub max: String,
}

/// The whole page.
#[derive(Debug)]
pub struct Page {
    pub title: String,
    pub banner: Option<Banner>,
    pub facts: Vec<Fact>,
    pub models: Vec<ModelRow>,
    pub decode_issues: Vec<String>,
    pub notes: Vec<String>,
    /// The people with the most screen time, shown large; the rest, folded and small.
    pub cards: Vec<Card>,
    pub more_cards: Vec<Card>,
    pub timeline: Option<Timeline>,
    pub screen: Bars,
    /// The rest of the people, folded, on the same scale.
    pub screen_more: Bars,
    pub contact: Vec<ContactRow>,
    pub contact_note: Option<String>,
    pub skipped: Bars,
    pub sizes: Columns,
    pub scores: Columns,
    pub stages: Vec<StageRow>,
    pub stage_totals: Bars,
    pub stage_pcts: Bars,
    pub frame_times: Columns,
    pub fps: Line,
    pub calls: Columns,
    pub calls_text: String,
}

/// The episode's time span: from the first shot (or face) to one frame past the last.
fn span(f: &RunFiles, fps: Option<f64>) -> (f64, f64) {
    let frame = fps.filter(|r| *r > 0.0).map_or(0.0, |r| 1.0 / r);
    let shots = f.shots.as_deref().unwrap_or_default();
    let faces = f.faces.as_deref().unwrap_or_default();
    let lo = shots.iter().map(|s| s.t_start).chain(faces.iter().map(|x| x.t)).fold(f64::INFINITY, f64::min);
    let hi = shots.iter().map(|s| s.t_end).chain(faces.iter().map(|x| x.t)).fold(f64::NEG_INFINITY, f64::max);
    if lo.is_finite() && hi.is_finite() {
        (lo, hi + frame)
    } else {
        (0.0, 0.0)
    }
}

/// A crop shrunk for the page as a `data:` URI: the whole 224×112 crop (`half = false`) or its
/// aligned left half, at `w` pixels wide. `None` when the crop is missing or unreadable.
pub(super) fn thumbnail(jpeg: &[u8], half: bool, w: u32, quality: u8) -> Option<String> {
    let img = image::load_from_memory_with_format(jpeg, image::ImageFormat::Jpeg).ok()?.to_rgb8();
    let img = match half {
        true => image::imageops::crop_imm(&img, 0, 0, img.height().min(img.width()), img.height()).to_image(),
        false => img,
    };
    let h = ((u64::from(w) * u64::from(img.height())) / u64::from(img.width().max(1))).max(1) as u32;
    let small = image::imageops::resize(&img, w, h, image::imageops::FilterType::Triangle);
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality).encode_image(&small).ok()?;
    Some(format!("data:image/jpeg;base64,{}", base64::engine::general_purpose::STANDARD.encode(bytes)))
}

/// Spends the image budget in page order; once it is gone, no more crops are inlined.
struct Budget {
    left: usize,
    dropped: usize,
}

impl Budget {
    fn take(&mut self, img: Option<String>) -> Option<String> {
        let img = img?;
        if img.len() > self.left {
            self.dropped += 1;
            self.left = 0; // in page order: nothing after the first crop that does not fit
            return None;
        }
        self.left -= img.len();
        Some(img)
    }
}

fn person_label(p: &Person) -> String {
    p.name.clone().unwrap_or_else(|| format!("Person {}", p.person_id))
}

fn stride(f: &RunFiles) -> Option<u64> {
    f.manifest.as_ref()?.config.get("sampling")?.get("stride")?.as_u64()
}

fn pct(part: f64, whole: f64) -> String {
    if whole > 0.0 {
        format!("{:.1} %", 100.0 * part / whole)
    } else {
        "–".into()
    }
}

fn banner(f: &RunFiles) -> Option<Banner> {
    let manifest_status = f.manifest.as_ref().and_then(|m| m.status.clone());
    let progress = f.progress.as_ref();
    let status = progress.and_then(|p| p.status.clone()).or_else(|| manifest_status.clone());
    let frames = progress.map(|p| p.frames_decoded).filter(|n| *n > 0).or_else(|| f.manifest.as_ref()?.counts.as_ref().map(|c| c.frames_decoded));
    match status.as_deref() {
        Some("done") => None,
        Some("done_with_errors") => Some(Banner {
            kind: "warn",
            text: "Done with errors: decoding went past problems in the input (listed below); the results hold every frame that decoded.".into(),
        }),
        Some("interrupted") => Some(Banner {
            kind: "warn",
            text: format!(
                "Interrupted after {} frames: this report shows what was harvested up to there. Run the same command again to resume.",
                frames.unwrap_or(0)
            ),
        }),
        Some("failed") => {
            let why = progress.and_then(|p| p.error.clone()).unwrap_or_else(|| "no reason recorded".into());
            let rest = match manifest_status.as_deref() {
                Some("done" | "done_with_errors") => "The results below are those of the earlier run it left in place.",
                _ => "What is below is what its files hold; nothing of the failed run was published.",
            };
            Some(Banner { kind: "error", text: format!("The last harvest into this folder failed: {why}. {rest}") })
        }
        Some("running") => Some(Banner {
            kind: "info",
            text: format!(
                "Still running (progress as of {}): results are published when the run ends.",
                progress.and_then(|p| p.updated_at.clone()).unwrap_or_default()
            ),
        }),
        Some(other) => Some(Banner { kind: "warn", text: format!("Status \"{other}\".") }),
        None => Some(Banner { kind: "error", text: "No manifest.json or progress.json here: this folder holds no run that got under way.".into() }),
    }
}

fn facts(f: &RunFiles, people: usize, duration: f64) -> (Vec<Fact>, Vec<ModelRow>) {
    let mut out = Vec::new();
    let mut fact = |label: &'static str, value: String| out.push(Fact { label, value });
    let Some(m) = &f.manifest else { return (out, Vec::new()) };
    if let Some(i) = &m.input {
        fact("Input", i.source.clone().unwrap_or_else(|| i.path.display().to_string()));
        let v = &i.video;
        let rate = v.frame_rate.map(|r| format!("{r:.3} fps")).unwrap_or_else(|| "no frame rate".into());
        let frames = v.frames_total.map(|n| format!(", {n} frames")).unwrap_or_default();
        fact("Video", format!("{}×{}, {rate}, {}, {}{frames}, {:.1} MB", v.width, v.height, v.codec, mmss_tenths(duration), i.size_bytes as f64 / 1e6));
    }
    let status = f.progress.as_ref().and_then(|p| p.status.clone()).or(m.status.clone()).unwrap_or_default();
    fact("Status", status);
    if let (Some(a), Some(b)) = (&m.started_at, &m.finished_at) {
        fact("Ran", format!("{a} → {b}"));
    }
    if let Some(v) = &m.version {
        fact("Tool", format!("episode-run {v} (commit {})", m.git_commit.clone().unwrap_or_default()));
    }
    fact(
        "ONNX Runtime",
        m.onnxruntime.as_ref().map_or_else(
            || "not loaded (decode only)".into(),
            |r| {
                let fallback = r.fallback.as_ref().map_or_else(String::new, |why| format!(" (CUDA could not run the models: {why})"));
                format!("{}, {}{fallback}", r.version, r.execution_provider)
            },
        ),
    );
    if let Some(h) = &m.host {
        fact("Host", format!("{}, {} cores, {:.1} GiB", h.cpu, h.cores, h.memory_gib));
    }
    if let Some(t) = &m.threads {
        fact("Threads", format!("budget {}: decode {}, {} model worker(s) × {} thread(s)", t.budget, t.decode, t.workers, t.worker_threads));
    }
    if let Some(c) = &m.counts {
        if let Some(w) = m.wall_s {
            let rate = if w > 0.0 { format!(" ({:.1} frames/s)", c.frames_decoded as f64 / w) } else { String::new() };
            fact("Wall time", format!("{w:.1} s{rate}"));
        }
        let stride = stride(f).map(|s| format!(" (stride {s})")).unwrap_or_default();
        fact("Frames", format!("{} decoded, {} sampled{stride}", c.frames_decoded, c.frames_sampled));
        let skipped: u64 = c.faces_skipped.values().sum();
        fact("Faces", format!("{} detected, {} embedded, {skipped} skipped", c.faces_detected, c.faces_embedded));
        fact("Tracks", format!("{} in {} shots", c.tracks, c.shots));
    }
    fact("People", people.to_string());
    if let Some(s) = &m.seeds {
        fact("Seeds", s.display().to_string());
    }
    let models = m
        .models
        .iter()
        .map(|(name, x)| ModelRow {
            name: name.clone(),
            file: x.path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
            sha256: x.sha256.clone(),
        })
        .collect();
    (out, models)
}

/// Lanes for `people` (in rank order), each with a bar per track over its interval (`spans`,
/// by track id).
fn lanes(people: &[(usize, &Person)], by_person: &BTreeMap<u64, Vec<&Track>>, x: &dyn Fn(f64) -> f64, spans: &HashMap<u64, (f64, f64)>) -> Vec<Lane> {
    people
        .iter()
        .enumerate()
        .map(|(i, (rank, p))| {
            let label = person_label(p);
            let bars = by_person
                .get(&p.person_id)
                .into_iter()
                .flatten()
                .map(|t| {
                    let (start, end) = spans.get(&t.track_id).copied().unwrap_or((t.t_start, t.t_end));
                    let (a, b) = (x(start), x(end));
                    TBar {
                        track_id: t.track_id,
                        x: n(LANE_LABEL + a),
                        w: n((b - a).max(1.5)),
                        title: format!("track {} · {}–{} · shot {}", t.track_id, mmss_tenths(t.t_start), mmss_tenths(t.t_end), t.shot),
                    }
                })
                .collect();
            Lane { y: n(i as f64 * LANE), short: charts::clip(&label, 22), label, colour: colour(*rank), bars }
        })
        .collect()
}

pub fn build(f: &RunFiles) -> Page {
    let m = f.manifest.as_ref();
    let fps = m.and_then(|m| m.input.as_ref()?.video.frame_rate);
    let stride = stride(f).unwrap_or(1);
    let (t0, t1) = span(f, fps);
    let frames = m.and_then(|m| m.counts.as_ref()).map(|c| c.frames_decoded).unwrap_or(0);
    let duration = match fps {
        Some(r) if r > 0.0 && frames > 0 => frames as f64 / r,
        _ => t1 - t0,
    };
    let mut notes: Vec<String> = f.unreadable.iter().map(|u| format!("could not read {u}")).collect();

    // People, ranked by screen time (ties by id): the rank picks the colour everywhere.
    let mut people: Vec<&Person> = f.people.as_deref().unwrap_or_default().iter().collect();
    people.sort_by(|a, b| b.screen_time_s.total_cmp(&a.screen_time_s).then(a.person_id.cmp(&b.person_id)));
    let ranked: Vec<(usize, &Person)> = people.iter().copied().enumerate().collect();
    if f.people.is_none() {
        notes.push(format!(
            "No {}: the run was made before tracks were grouped into people, or did not get that far. `episode-run people {}` groups a finished run's tracks.",
            run_dir::PEOPLE,
            f.dir.display()
        ));
    }
    let tracks = f.tracks.as_deref().unwrap_or_default();
    let mut by_person: BTreeMap<u64, Vec<&Track>> = BTreeMap::new();
    for t in tracks {
        if let Some(p) = t.person_id {
            by_person.entry(p).or_default().push(t);
        }
    }
    by_person.values_mut().for_each(|v| v.sort_by(|a, b| a.t_start.total_cmp(&b.t_start).then(a.track_id.cmp(&b.track_id))));

    let mut budget = Budget { left: CARD_BUDGET, dropped: 0 };
    let mut cards: Vec<Card> = ranked
        .iter()
        .map(|(rank, p)| Card {
            person_id: p.person_id,
            label: person_label(p),
            named: p.name.is_some(),
            colour: colour(*rank),
            img: budget.take(f.crop(&run_dir::person_crop(p.person_id)).and_then(|j| match *rank < LARGE_CARDS {
                true => thumbnail(&j, false, 176, 75),
                false => thumbnail(&j, false, 120, 55),
            })),
            screen: charts::duration(p.screen_time_s),
            pct: pct(p.screen_time_s, duration),
            tracks: p.n_tracks,
            faces: p.n_faces,
            shots: p.shots.len(),
            first: mmss(p.first_t),
            last: mmss(p.last_t),
            // The closest seed of an unnamed person is no match: only names show their score.
            identity: p.identity.as_ref().filter(|i| i.name.is_some()).map(|i| format!("score {:.2}, margin {:.2}", i.score, i.margin)),
        })
        .collect();

    // The timeline: a track covers its interval as screen time counts it.
    let timeline = (t1 > t0 && !ranked.is_empty()).then(|| {
        let scale = WIDTH / (t1 - t0);
        let x = move |t: f64| (t - t0).clamp(0.0, t1 - t0) * scale;
        let shots = f.shots.as_deref().unwrap_or_default();
        let seen: Vec<Seen> = tracks.iter().map(|t| Seen { shot: t.shot, t_start: t.t_start, t_end: t.t_end }).collect();
        let shot_ends: Vec<(u64, f64)> = shots.iter().map(|s| (s.shot, s.t_end)).collect();
        let spans: HashMap<u64, (f64, f64)> = tracks.iter().map(|t| t.track_id).zip(intervals(&seen, &shot_ends, RunFacts::new(stride, fps))).collect();
        let split = ranked.len().min(OPEN_LANES);
        let open = lanes(&ranked[..split], &by_person, &x, &spans);
        let folded = lanes(&ranked[split..], &by_person, &x, &spans);
        Timeline {
            open_height: n(open.len() as f64 * LANE),
            open_svg: n(open.len() as f64 * LANE + AXIS),
            folded_height: n(folded.len() as f64 * LANE),
            folded_svg: n(folded.len() as f64 * LANE + AXIS),
            open,
            folded,
            cuts: shots.iter().skip(1).map(|s| n(LANE_LABEL + x(s.t_start))).collect(),
            ticks: charts::time_ticks(t0, t1, 10).into_iter().map(|t| Tick { pos: n(LANE_LABEL + x(t)), label: mmss(t) }).collect(),
        }
    });

    let screen_row = |(rank, p): &(usize, &Person)| {
        (person_label(p), p.screen_time_s, format!("{} · {}", charts::duration(p.screen_time_s), pct(p.screen_time_s, duration)), colour(*rank))
    };
    let screen = bars(ranked.iter().take(SCREEN_BARS).map(screen_row).collect());
    let top = ranked.first().map_or(0.0, |(_, p)| p.screen_time_s);
    let screen_more = bars_to(ranked.iter().skip(SCREEN_BARS).map(screen_row).collect(), top);

    let more_cards = cards.split_off(cards.len().min(LARGE_CARDS));
    let cards_dropped = budget.dropped;
    let mut budget = Budget { left: CONTACT_BUDGET, dropped: 0 };
    let mut contact = Vec::new();
    for (rank, p) in ranked.iter().take(CONTACT_PEOPLE) {
        let own = by_person.get(&p.person_id).map(Vec::as_slice).unwrap_or_default();
        let thumbs = own
            .iter()
            .take(CONTACT_TRACKS)
            .map(|t| Thumb {
                img: budget.take(f.crop(&run_dir::track_crop(t.track_id)).and_then(|j| thumbnail(&j, true, 64, 65))),
                caption: format!("#{} {}–{}", t.track_id, mmss_tenths(t.t_start), mmss_tenths(t.t_end)),
            })
            .collect();
        contact.push(ContactRow { label: person_label(p), colour: colour(*rank), thumbs, more: own.len().saturating_sub(CONTACT_TRACKS) });
    }
    let mut contact_note = Vec::new();
    if ranked.len() > CONTACT_PEOPLE {
        contact_note.push(format!("The {} people with the least screen time are left out.", ranked.len() - CONTACT_PEOPLE));
    }
    if budget.dropped + cards_dropped > 0 {
        contact_note.push(format!("{} crops are not shown, to keep this page small.", budget.dropped + cards_dropped));
    }
    let contact_note = (!contact_note.is_empty()).then(|| contact_note.join(" "));

    let (facts, models) = facts(f, people.len(), duration);
    let counts = m.and_then(|m| m.counts.as_ref());
    let faces = f.faces.as_deref().unwrap_or_default();

    let skipped = match counts {
        Some(c) if c.faces_detected > 0 => {
            let mut rows = vec![(
                "embedded".to_string(),
                c.faces_embedded as f64,
                format!("{} · {}", c.faces_embedded, pct(c.faces_embedded as f64, c.faces_detected as f64)),
                "#3ca951".to_string(),
            )];
            for (reason, k) in c.faces_skipped.iter().filter(|(_, k)| **k > 0) {
                rows.push((reason.replace('_', " "), *k as f64, format!("{k} · {}", pct(*k as f64, c.faces_detected as f64)), "#9aa3ad".to_string()));
            }
            bars(rows)
        }
        _ => Bars { empty: true, ..Bars::default() },
    };
    let (emb, skip): (Vec<_>, Vec<_>) = faces.iter().partition(|x| x.skip_reason.is_none());
    let sizes_emb: Vec<f64> = emb.iter().map(|x| x.size()).collect();
    let sizes_skip: Vec<f64> = skip.iter().map(|x| x.size()).collect();
    let size_hi = nice_ceil(quantile(sizes_emb.iter().chain(&sizes_skip).copied().collect(), 0.99));
    let sizes = histogram(&[&sizes_emb, &sizes_skip], 0.0, size_hi.max(1.0), 30, "face size (shorter side of the box)", " px", &["embedded", "skipped"]);
    let score_emb: Vec<f64> = emb.iter().map(|x| x.det_score).collect();
    let score_skip: Vec<f64> = skip.iter().map(|x| x.det_score).collect();
    let score_lo = (score_emb.iter().chain(&score_skip).copied().fold(1.0, f64::min) * 20.0).floor() / 20.0;
    let scores = histogram(&[&score_emb, &score_skip], score_lo.min(0.95), 1.0 + 1e-9, 25, "detector score", "", &["embedded", "skipped"]);

    // Performance.
    let stage_names = ["decode", "detect", "align", "embed"];
    let timings = m.map(|m| &m.timings);
    let stages: Vec<StageRow> = stage_names
        .iter()
        .filter_map(|s| timings?.get(*s).map(|st| (s, st)))
        .map(|(s, st)| StageRow { name: s.to_string(), total: format!("{:.2} s", st.total_s), p50: ms(st.p50_ms), p95: ms(st.p95_ms), max: ms(st.max_ms) })
        .collect();
    let stage_colours = ["#4269d0", "#efb118", "#ff725c", "#3ca951"];
    let stage_totals = bars(
        stage_names
            .iter()
            .zip(stage_colours)
            .filter_map(|(s, c)| timings?.get(*s).map(|st| (s.to_string(), st.total_s, format!("{:.2} s", st.total_s), c.to_string())))
            .collect(),
    );
    let mut pct_rows = Vec::new();
    for (s, c) in stage_names.iter().zip(stage_colours) {
        if let Some(st) = timings.and_then(|t| t.get(*s)) {
            for (what, v) in [("p50", st.p50_ms), ("p95", st.p95_ms), ("max", st.max_ms)] {
                pct_rows.push((format!("{s} {what}"), v, ms(v), c.to_string()));
            }
        }
    }
    let stage_pcts = bars(pct_rows);
    let rows = f.timings.as_deref().unwrap_or_default();
    let per_frame: Vec<f64> = rows.iter().map(|r| r.decode_ms + r.detect_ms + r.align_ms + r.embed_ms).collect();
    let frame_hi = nice_ceil(quantile(per_frame.clone(), 0.99));
    let frame_times = histogram(&[&per_frame], 0.0, frame_hi.max(1.0), 30, "time per sampled frame (decode + detect + align + embed)", " ms", &[]);
    let fps_points = decoded_fps(rows);
    if !rows.is_empty() && rows.iter().all(|r| r.elapsed_s.is_none()) {
        notes.push(format!("{} has no wall-clock times (written by an older version): decoded fps over the run cannot be drawn.", run_dir::TIMINGS));
    }
    let fps = line(&fps_points, true);
    let (calls, calls_text) = match counts {
        Some(c) => {
            let mut sizes = Vec::new();
            for (k, v) in &c.embed_call_crops {
                if let Ok(k) = k.parse::<f64>() {
                    sizes.extend(std::iter::repeat_n(k, *v as usize));
                }
            }
            let max = sizes.iter().copied().fold(0.0, f64::max);
            let bins = (max as usize).clamp(1, 40);
            let chart = histogram(&[&sizes], 0.5, max.max(1.0) + 0.5, bins, "crops per embedder call", "", &[]);
            let mean = if c.embed_calls > 0 { format!("{:.1}", c.faces_embedded as f64 / c.embed_calls as f64) } else { "–".into() };
            if c.embed_call_crops.is_empty() && c.embed_calls > 0 {
                notes.push("The manifest has no per-call crop counts (written by an older version): only the mean is shown.".into());
            }
            (chart, format!("{} embedder calls for {} crops: {mean} crops per call on average.", c.embed_calls, c.faces_embedded))
        }
        None => (Columns { empty: true, ..Columns::default() }, String::new()),
    };

    Page {
        title: m
            .and_then(|m| m.input.as_ref())
            .and_then(|i| i.path.file_name())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| f.dir.display().to_string()),
        banner: banner(f),
        facts,
        models,
        decode_issues: m.map(|m| m.decode_issues.clone()).unwrap_or_default(),
        notes,
        cards,
        more_cards,
        timeline,
        screen,
        screen_more,
        contact,
        contact_note,
        skipped,
        sizes,
        scores,
        stages,
        stage_totals,
        stage_pcts,
        frame_times,
        fps,
        calls,
        calls_text,
    }
}

fn ms(v: f64) -> String {
    format!("{} ms", short(v))
}

/// The `q` quantile (nearest rank) of the finite values of `v`; 0 for none.
fn quantile(mut v: Vec<f64>, q: f64) -> f64 {
    v.retain(|x| x.is_finite());
    v.sort_by(f64::total_cmp);
    crate::output::manifest::nearest_rank(&v, q)
}

/// `x` rounded up to 1, 2 or 5 × 10^k.
fn nice_ceil(x: f64) -> f64 {
    if x.is_nan() || x <= 0.0 {
        return 0.0;
    }
    let mag = 10f64.powf(x.log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * mag).find(|s| *s >= x).unwrap_or(10.0 * mag)
}

/// Decoded frames per second over the run, from when each sampled frame was written: one point
/// per window of at least 1/60 of the run (and 0.5 s), over the frames decoded in it. A resumed
/// run's later processes start their clocks again; their times are laid after the earlier ones,
/// and no window spans two processes.
fn decoded_fps(rows: &[super::load::Timing]) -> Vec<(f64, f64)> {
    let mut timed: Vec<(usize, f64, u64)> = Vec::new();
    let (mut offset, mut last, mut process) = (0.0, 0.0, 0);
    for r in rows {
        let Some(e) = r.elapsed_s else { continue };
        if e < last {
            offset += last;
            process += 1;
        }
        last = e;
        timed.push((process, offset + e, r.frame_idx));
    }
    let total = timed.last().map_or(0.0, |t| t.1) - timed.first().map_or(0.0, |t| t.1);
    let window = (total / 60.0).max(0.5);
    let mut points = Vec::new();
    let mut anchor = timed.first().copied();
    for &t in timed.iter().skip(1) {
        let Some(a) = anchor else { break };
        if t.0 != a.0 {
            anchor = Some(t);
        } else if t.1 - a.1 >= window {
            if t.2 > a.2 {
                points.push((t.1, (t.2 - a.2) as f64 / (t.1 - a.1)));
            }
            anchor = Some(t);
        }
    }
    points
}

#[cfg(test)]
mod tests {
    use super::super::load::{Manifest, Progress, Timing};
    use super::*;

    fn person(id: u64, name: Option<&str>, screen: f64) -> Person {
        Person { person_id: id, name: name.map(str::to_string), screen_time_s: screen, n_tracks: 1, ..Person::default() }
    }

    #[test]
    fn people_rank_by_screen_time_and_unknown_people_are_numbered() {
        let f = RunFiles {
            people: Some(vec![person(0, None, 2.0), person(1, Some("<b>x</b>"), 9.0), person(2, None, 9.0)]),
            tracks: Some(vec![
                Track { track_id: 5, person_id: Some(1), t_start: 1.0, t_end: 2.0, ..Track::default() },
                Track { track_id: 6, person_id: None, ..Track::default() },
            ]),
            shots: Some(vec![super::super::load::Shot { shot: 0, t_start: 0.0, t_end: 10.0 }]),
            ..RunFiles::default()
        };
        let p = build(&f);
        assert_eq!(p.cards.iter().map(|c| c.label.as_str()).collect::<Vec<_>>(), ["<b>x</b>", "Person 2", "Person 0"]);
        assert_eq!(p.cards[0].colour, colour(0));
        let t = p.timeline.unwrap();
        let bars: Vec<u64> = t.open.iter().flat_map(|l| &l.bars).map(|b| b.track_id).collect();
        assert_eq!(bars, [5], "one bar per track that has a person");
        assert!(p.notes.is_empty(), "{:?}", p.notes);
    }

    #[test]
    fn a_bar_covers_its_track_as_screen_time_counts_it() {
        let manifest: Manifest = serde_json::from_value(serde_json::json!({
            "config": {"sampling": {"stride": 4}},
            "input": {"video": {"frame_rate": 10.0}},
        }))
        .unwrap();
        let f = RunFiles {
            manifest: Some(manifest),
            people: Some(vec![person(0, None, 1.2)]),
            tracks: Some(vec![Track { track_id: 0, shot: 0, t_start: 1.0, t_end: 2.0, person_id: Some(0), ..Track::default() }]),
            shots: Some(vec![super::super::load::Shot { shot: 0, t_start: 0.0, t_end: 2.1 }]),
            ..RunFiles::default()
        };
        let t = build(&f).timeline.unwrap();
        let bar = &t.open[0].bars[0];
        // One stride past its last face (2.4 s), cut at its shot's end (2.2 s): the whole 0–2.2 s axis
        // is 1000 units, so the bar runs from 454.5 to 1000.
        assert_eq!((bar.x.as_str(), bar.w.as_str()), ("624.5", "545.5"));
    }

    #[test]
    fn every_status_but_done_says_so_at_the_top() {
        let with = |manifest: Option<&str>, progress: Option<(&str, Option<&str>)>| {
            let f = RunFiles {
                manifest: manifest.map(|s| Manifest { status: Some(s.into()), ..Manifest::default() }),
                progress: progress.map(|(s, e)| Progress { status: Some(s.into()), frames_decoded: 40, error: e.map(str::to_string), ..Progress::default() }),
                ..RunFiles::default()
            };
            build(&f).banner.map(|b| (b.kind, b.text))
        };
        assert!(with(Some("done"), Some(("done", None))).is_none());
        let (kind, text) = with(Some("interrupted"), Some(("interrupted", None))).unwrap();
        assert_eq!(kind, "warn");
        assert!(text.starts_with("Interrupted after 40 frames"), "{text}");
        let (kind, text) = with(Some("done"), Some(("failed", Some("model missing")))).unwrap();
        assert_eq!(kind, "error");
        assert!(text.contains("model missing") && text.contains("earlier run"), "{text}");
        let (_, text) = with(None, Some(("failed", Some("disk full")))).unwrap();
        assert!(text.contains("nothing of the failed run was published"), "{text}");
        assert_eq!(with(None, None).unwrap().0, "error");
    }

    #[test]
    fn fps_over_a_resumed_run_continues_its_clock() {
        let row = |frame_idx, e| Timing { frame_idx, elapsed_s: Some(e), ..Timing::default() };
        let rows = [row(0, 1.0), row(10, 2.0), row(12, 2.2), row(20, 3.0), row(30, 0.5), row(40, 1.5)];
        let p = decoded_fps(&rows);
        assert_eq!(p, vec![(2.0, 10.0), (3.0, 10.0), (4.5, 10.0)], "windows of 0.5 s at least; none across the resume");
        assert!(decoded_fps(&[Timing::default()]).is_empty());
    }

    #[test]
    fn quantiles_and_round_ceilings() {
        assert_eq!(quantile(vec![3.0, 1.0, 2.0, f64::NAN], 0.5), 2.0);
        assert_eq!(quantile(vec![], 0.9), 0.0);
        assert_eq!((nice_ceil(0.0), nice_ceil(37.0), nice_ceil(120.0), nice_ceil(0.3)), (0.0, 50.0, 200.0, 0.5));
    }

    #[test]
    fn a_budget_stops_inlining_once_spent() {
        let mut b = Budget { left: 10, dropped: 0 };
        assert_eq!(b.take(Some("123456".into())).as_deref(), Some("123456"));
        assert_eq!(b.take(Some("123456".into())), None);
        assert_eq!(b.take(Some("1".into())), None, "nothing after the first that did not fit");
        assert_eq!(b.dropped, 2);
    }
}
