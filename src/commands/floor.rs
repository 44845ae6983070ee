//! The model floor of a completed run: the time ONNX Runtime alone needs for exactly that run's
//! model work — its detector on every sampled frame, its embedder on every embedded crop at the
//! best batch size — so `scripts/bench` can say how close a harvest comes to the physical limit.
//! Decoding, letterboxing and alignment happen here too but are not timed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use ndarray::Array4;

use super::{Error, Outcome};
use crate::align::align_face;
use crate::cli::FloorArgs;
use crate::config::FloorConfig;
use crate::detect;
use crate::embed::sface::{crops_to_tensor, SfaceEmbedder};
use crate::onnx;
use crate::output::{self, FaceRecord};
use crate::run_dir::{self, ManifestHead};
use crate::types::RgbImage;
use crate::video::VideoDecoder;

type Landmarks = [[f32; 2]; 5];

/// Batch sizes tried for the embedder; the floor takes the fastest.
const BATCHES: [usize; 5] = [1, 2, 4, 8, 16];
/// Crops used to choose the batch size (a multiple of every size tried).
const PROBE_CROPS: usize = 48;

/// What the floor measurement found, printed as JSON by `episode-run floor`.
#[derive(Debug, serde::Serialize)]
pub struct Floor {
    pub run_dir: PathBuf,
    pub threads: usize,
    pub frames: u64,
    pub faces: usize,
    pub detect_s: f64,
    pub embed_s: f64,
    /// Embedder milliseconds per face at each batch size tried (on the first crops).
    pub embed_ms_per_face: BTreeMap<usize, f64>,
    pub best_batch: usize,
    pub floor_s: f64,
}

pub fn run(args: &FloorArgs) -> Result<Outcome, Error> {
    let cfg = FloorConfig::from_args(args)?;
    let floor = floor(&cfg)?;
    println!("{}", serde_json::to_string(&floor).unwrap_or_default());
    Ok(Outcome::Done)
}

/// Replays `run_dir`'s model work and times ONNX Runtime alone.
pub fn floor(cfg: &FloorConfig) -> Result<Floor, Error> {
    let manifest = ManifestHead::read(&cfg.run_dir)?;
    let settings = manifest.config;
    let input = manifest.input.path;
    let detector_path = manifest
        .models
        .get("detector")
        .map(|m| m.path.clone())
        .ok_or_else(|| output::ReadError { path: cfg.run_dir.join(run_dir::MANIFEST), why: "the run used no detector".into() })?;
    let embedder_path = manifest.models.get("embedder").map(|m| m.path.clone());
    let threads = cfg.threads.unwrap_or(manifest.threads.budget);

    // The embedded faces of each frame, in embedding-row order.
    let faces: Vec<FaceRecord> = output::read_jsonl(&cfg.run_dir.join(run_dir::FACES))?;
    let mut wanted: BTreeMap<u64, Vec<(u64, Landmarks)>> = BTreeMap::new();
    for face in faces {
        let Some(row) = face.embedding_row else { continue };
        wanted.entry(face.frame_idx).or_default().push((row, face.landmarks.map(|p| p.map(|v| v as f32))));
    }

    onnx::init_runtime(&cfg.ort_lib, onnx::Provider::Cpu)?;
    let mut detector = detect::load(&detector_path, threads, settings.detect.clone(), settings.detect.family)?;
    let plan = detector.input_plan();
    let mut decoder = VideoDecoder::open(&input, threads, settings.sampling.stride)?.with_scaled(Box::new(move |w, h| plan.scaled_size(w, h)));
    let (mut frames, mut detect_time, mut warm) = (0u64, Duration::ZERO, false);
    let mut crops: Vec<(u64, RgbImage)> = Vec::new();
    let tensors = detect::TensorPool::default();
    while let Some(frame) = decoder.next_frame()? {
        let Some(image) = frame.image else { continue };
        let prepared = plan.prepare_frame(&image, frame.scaled.as_ref(), &tensors);
        if !warm {
            detector.detect_prepared(&prepared)?;
            warm = true;
        }
        detect_time += detector.detect_prepared(&prepared)?.1;
        frames += 1;
        for (row, lm) in wanted.remove(&frame.idx).unwrap_or_default() {
            if let Ok(crop) = align_face(&image, &lm) {
                crops.push((row, crop));
            }
        }
    }
    crops.sort_by_key(|c| c.0);
    let crops: Vec<&RgbImage> = crops.iter().map(|c| &c.1).collect();

    let (mut per_face, mut best_batch, mut embed_time) = (BTreeMap::new(), 1, Duration::ZERO);
    if let (Some(path), false) = (embedder_path, crops.is_empty()) {
        let mut embedder = SfaceEmbedder::load(&path, threads)?;
        let probe = &crops[..crops.len().min(PROBE_CROPS)];
        let mut time_all = |batch: usize, crops: &[&RgbImage]| -> Result<Duration, Error> {
            let tensors: Vec<Array4<f32>> = crops.chunks(batch).map(crops_to_tensor).collect();
            let mut total = Duration::ZERO;
            for t in &tensors {
                total += embedder.embed_tensor(t.view())?.1;
            }
            Ok(total)
        };
        time_all(1, &probe[..1])?;
        let mut best = f64::INFINITY;
        for batch in BATCHES {
            let ms = time_all(batch, probe)?.as_secs_f64() * 1e3 / probe.len() as f64;
            per_face.insert(batch, (ms * 1e3).round() / 1e3);
            if ms < best {
                (best, best_batch) = (ms, batch);
            }
        }
        embed_time = time_all(best_batch, &crops)?;
    }
    let round = |d: Duration| (d.as_secs_f64() * 1e3).round() / 1e3;
    Ok(Floor {
        run_dir: cfg.run_dir.clone(),
        threads,
        frames,
        faces: crops.len(),
        detect_s: round(detect_time),
        embed_s: round(embed_time),
        embed_ms_per_face: per_face,
        best_batch,
        floor_s: round(detect_time + embed_time),
    })
}
