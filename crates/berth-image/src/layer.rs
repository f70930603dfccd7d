//! Ingesting one layer: a single pass over the (possibly compressed) layer stream writes
//! the blob to the content store, hashes it, decompresses it, hashes the uncompressed
//! tar (the diff_id) and unpacks it into a staging snapshot. Nothing becomes visible
//! here; the caller verifies the digests against the manifest and config, makes
//! everything durable and publishes.

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::rc::Rc;

use berth_store::{BlobWriter, PendingBlob, PendingSnapshot, Store};
use berth_types::{media, Digest, Sha256Writer};

use crate::unpack::{unpack_layer, UnpackError, UnpackOptions, UnpackStats};

/// Bytes of uncompressed output allowed before the compression ratio is checked.
const RATIO_FLOOR: u64 = 1 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// The OCI media type of a layer blob with this compression.
    pub fn oci_media_type(self) -> &'static str {
        match self {
            Compression::None => media::OCI_LAYER,
            Compression::Gzip => media::OCI_LAYER_GZIP,
            Compression::Zstd => media::OCI_LAYER_ZSTD,
        }
    }

    /// The Docker media type of a layer blob with this compression (zstd has none).
    pub fn docker_media_type(self) -> &'static str {
        match self {
            Compression::None => media::DOCKER_LAYER,
            Compression::Gzip => media::DOCKER_LAYER_GZIP,
            Compression::Zstd => media::OCI_LAYER_ZSTD,
        }
    }
}

/// Recognizes a layer by its first bytes: gzip, zstd, or a tar header (ustar magic, or
/// an all-zero block: the end-of-archive marker of an empty layer).
pub fn sniff(head: &[u8]) -> Option<Compression> {
    if head.starts_with(&[0x1f, 0x8b]) {
        return Some(Compression::Gzip);
    }
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Some(Compression::Zstd);
    }
    if head.len() >= 512 {
        if &head[257..262] == b"ustar" {
            return Some(Compression::None);
        }
        if head[..512].iter().all(|b| *b == 0) {
            return Some(Compression::None);
        }
        // A V7 tar header: a name, octal mode/uid/gid/size fields and a valid checksum.
        if v7_checksum_ok(&head[..512]) {
            return Some(Compression::None);
        }
    }
    None
}

fn v7_checksum_ok(h: &[u8]) -> bool {
    let field = &h[148..156];
    let text: String = field
        .iter()
        .take_while(|b| **b != 0 && **b != b' ')
        .map(|b| *b as char)
        .collect();
    let Ok(want) = u32::from_str_radix(text.trim(), 8) else {
        return false;
    };
    let sum: u32 = h
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                u32::from(b' ')
            } else {
                u32::from(*b)
            }
        })
        .sum();
    sum == want && h[0] != 0
}

/// A layer unpacked into staging, with its blob written but not published.
pub struct IngestedLayer {
    pub blob: PendingBlob,
    pub compression: Compression,
    pub diff_id: Digest,
    pub tar_size: u64,
    pub snapshot: PendingSnapshot,
    pub stats: UnpackStats,
}

/// Why ingesting a layer failed.
#[derive(Debug)]
pub enum LayerError {
    /// The layer content breaks a rule or is not a valid (compressed) tar.
    Unpack(UnpackError),
    /// The compressed stream expands more than allowed.
    Bomb {
        out: u64,
        compressed: u64,
        ratio: u64,
    },
    /// Reading the input or writing the store failed.
    Io(io::Error),
    Store(berth_store::Error),
}

impl std::fmt::Display for LayerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LayerError::Unpack(e) => write!(f, "{e}"),
            LayerError::Bomb { out, compressed, ratio } => write!(
                f,
                "decompression bomb: {out} bytes out of {compressed} compressed bytes exceeds the {ratio}:1 ratio allowed"
            ),
            LayerError::Io(e) => write!(f, "{e}"),
            LayerError::Store(e) => write!(f, "{e}"),
        }
    }
}

impl LayerError {
    pub fn is_no_space(&self) -> bool {
        match self {
            LayerError::Unpack(e) => e.is_no_space(),
            LayerError::Io(e) => berth_store::error::is_no_space(e),
            LayerError::Store(e) => e.is_no_space(),
            LayerError::Bomb { .. } => false,
        }
    }
}

/// Reads from `inner` and copies everything read into the blob writer.
struct Tee<'a, R> {
    inner: R,
    blob: &'a mut ThreadedBlob,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.blob.send(&buf[..n])?;
        Ok(n)
    }
}

/// Chunks of a blob in flight to its writer thread (bounds memory to ~2 MiB per layer).
const BLOB_QUEUE_CHUNKS: usize = 8;
const BLOB_CHUNK_BYTES: usize = 256 << 10;

/// Writes and hashes a blob on its own thread, so the unpacking thread does not wait for
/// the blob's write syscalls and sha256: on two cores a load runs both at once.
struct ThreadedBlob {
    tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    pending: Vec<u8>,
    thread: Option<std::thread::JoinHandle<io::Result<BlobWriter>>>,
}

impl ThreadedBlob {
    fn new(mut blob: BlobWriter) -> io::Result<ThreadedBlob> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(BLOB_QUEUE_CHUNKS);
        let thread = std::thread::Builder::new()
            .name("berth-blob".into())
            .spawn(move || {
                for chunk in rx {
                    blob.write_all(&chunk)?;
                }
                Ok(blob)
            })?;
        Ok(ThreadedBlob {
            tx: Some(tx),
            pending: Vec::with_capacity(BLOB_CHUNK_BYTES),
            thread: Some(thread),
        })
    }

    fn send(&mut self, data: &[u8]) -> io::Result<()> {
        self.pending.extend_from_slice(data);
        if self.pending.len() >= BLOB_CHUNK_BYTES {
            self.flush_pending()?;
        }
        Ok(())
    }

    fn flush_pending(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.pending, Vec::with_capacity(BLOB_CHUNK_BYTES));
        match &self.tx {
            Some(tx) => tx
                .send(chunk)
                .map_err(|_| io::Error::other("the blob writer stopped (see its error)")),
            None => Err(io::Error::other("blob already finished")),
        }
    }

    /// Waits for every byte to be written; returns the writer (digest and size inside).
    fn finish(mut self) -> io::Result<BlobWriter> {
        let flushed = self.flush_pending();
        self.tx = None;
        let res = match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("blob writer thread panicked"))),
            None => Err(io::Error::other("blob already finished")),
        };
        let blob = res?;
        flushed?;
        Ok(blob)
    }
}

impl Drop for ThreadedBlob {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reports the bytes read so far to `report` at least every `step` bytes and once at the
/// end of the stream (progress bars of loads and pulls).
pub(crate) struct ProgressRead<R, F> {
    inner: R,
    current: u64,
    last: u64,
    step: u64,
    report: F,
}

impl<R, F: FnMut(u64)> ProgressRead<R, F> {
    pub(crate) fn new(inner: R, step: u64, report: F) -> Self {
        ProgressRead {
            inner,
            current: 0,
            last: 0,
            step,
            report,
        }
    }
}

impl<R: Read, F: FnMut(u64)> Read for ProgressRead<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.current += n as u64;
        if self.current - self.last >= self.step || (n == 0 && self.current != self.last) {
            self.last = self.current;
            (self.report)(self.current);
        }
        Ok(n)
    }
}

/// Counts bytes read (the compressed input, for the ratio check).
struct Counting<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// Sits after the decompressor: refuses output growing past `max_ratio` times the
/// compressed input, and hashes the uncompressed tar when asked (its digest is the
/// diff_id).
struct Guard<R> {
    inner: R,
    hasher: Option<Sha256Writer>,
    out: u64,
    compressed: Rc<Cell<u64>>,
    max_ratio: u64,
}

impl<R: Read> Read for Guard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        self.out += n as u64;
        if self.max_ratio > 0
            && self.out > RATIO_FLOOR
            && self.out / self.max_ratio > self.compressed.get()
        {
            return Err(io::Error::other(BombMarker {
                out: self.out,
                compressed: self.compressed.get(),
            }));
        }
        Ok(n)
    }
}

#[derive(Debug)]
struct BombMarker {
    out: u64,
    compressed: u64,
}
impl std::fmt::Display for BombMarker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "decompression ratio exceeded ({} of {})",
            self.out, self.compressed
        )
    }
}
impl std::error::Error for BombMarker {}

fn bomb_of(e: &UnpackError) -> Option<(u64, u64)> {
    if let UnpackError::Io { source, .. } = e {
        if let Some(m) = source
            .get_ref()
            .and_then(|x| x.downcast_ref::<BombMarker>())
        {
            return Some((m.out, m.compressed));
        }
    }
    None
}

fn decoder<'a, R: Read + 'a>(c: Compression, r: R) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match c {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(r)?),
    })
}

/// Options shared by everything that ingests layers.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub unpack: UnpackOptions,
    /// 0 disables the check.
    pub max_compression_ratio: u64,
}

/// Streams one layer: `head` (already read from `input` to sniff it) followed by the rest
/// of `input`. With `store_uncompressed`, the blob written is the uncompressed tar (as
/// `docker import` stores it); otherwise the bytes exactly as they came.
pub fn ingest_layer(
    store: &Store,
    head: &[u8],
    input: &mut dyn Read,
    compression: Compression,
    store_uncompressed: bool,
    opts: &IngestOptions,
) -> Result<IngestedLayer, LayerError> {
    let mut sink = ThreadedBlob::new(store.content.writer().map_err(LayerError::Store)?)
        .map_err(LayerError::Io)?;
    let snapshot = store.snapshots.prepare().map_err(LayerError::Store)?;
    let compressed = Rc::new(Cell::new(0u64));
    let stream = io::Cursor::new(head).chain(input);
    let bomb = |e: UnpackError| match bomb_of(&e) {
        Some((out, c)) => LayerError::Bomb {
            out,
            compressed: c,
            ratio: opts.max_compression_ratio,
        },
        None => LayerError::Unpack(e),
    };
    let unpacked = (|| -> Result<(UnpackStats, Option<Digest>, Option<u64>), LayerError> {
        Ok(if compression == Compression::None {
            // One hash serves both: the blob is the uncompressed tar.
            let mut tee = Tee {
                inner: stream,
                blob: &mut sink,
            };
            let stats = unpack_layer(&mut tee, snapshot.path(), &opts.unpack)
                .map_err(LayerError::Unpack)?;
            io::copy(&mut tee, &mut io::sink()).map_err(LayerError::Io)?;
            (stats, None, None)
        } else if store_uncompressed {
            let counting = Counting {
                inner: stream,
                count: compressed.clone(),
            };
            let guard = Guard {
                inner: decoder(compression, counting).map_err(LayerError::Io)?,
                hasher: None,
                out: 0,
                compressed: compressed.clone(),
                max_ratio: opts.max_compression_ratio,
            };
            let mut tee = Tee {
                inner: guard,
                blob: &mut sink,
            };
            let stats = unpack_layer(&mut tee, snapshot.path(), &opts.unpack).map_err(bomb)?;
            io::copy(&mut tee, &mut io::sink()).map_err(LayerError::Io)?;
            (stats, None, None)
        } else {
            let counting = Counting {
                inner: stream,
                count: compressed.clone(),
            };
            let tee = Tee {
                inner: counting,
                blob: &mut sink,
            };
            let mut guard = Guard {
                inner: decoder(compression, tee).map_err(LayerError::Io)?,
                hasher: Some(Sha256Writer::new()),
                out: 0,
                compressed: compressed.clone(),
                max_ratio: opts.max_compression_ratio,
            };
            let stats = unpack_layer(&mut guard, snapshot.path(), &opts.unpack).map_err(bomb)?;
            io::copy(&mut guard, &mut io::sink()).map_err(LayerError::Io)?;
            let out = guard.out;
            let d = guard
                .hasher
                .take()
                .map(|h| h.finish())
                .unwrap_or_else(|| Digest::of(b""));
            (stats, Some(d), Some(out))
        })
    })();
    let finished = sink.finish();
    let (stats, diff_id, tar_size, blob) = match (unpacked, finished) {
        // A failed blob write (a full disk) explains a failed unpack better than its echo.
        (_, Err(e)) => {
            return Err(LayerError::Io(io::Error::new(
                e.kind(),
                format!("writing the layer blob to the content store: {e}"),
            )))
        }
        (Err(e), Ok(_)) => return Err(e),
        (Ok((stats, d, n)), Ok(blob)) => {
            let d = d.unwrap_or_else(|| blob.digest_so_far());
            let n = n.unwrap_or_else(|| blob.len());
            (stats, d, n, blob)
        }
    };
    let blob = blob.finish(None).map_err(LayerError::Store)?;
    Ok(IngestedLayer {
        blob,
        compression,
        diff_id,
        tar_size,
        snapshot,
        stats,
    })
}
