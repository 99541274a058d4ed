//! The message as it leaves over SMTP: the envelope sender and the `From:`, `Sender:`
//! and `Reply-To:` fields rewritten by `--sender-rewrite` (Maildir deliveries keep the
//! original), and the content streamed from the queue file to the connection: for DATA
//! dot-stuffed on the way, in pieces of [`DATA_CHUNK`] bytes; for BDAT (RFC 3030) as it
//! is, in chunks of [`BDAT_CHUNK`] bytes whose sizes are exact.
//!
//! Memory is bounded whatever the message size: per send, one piece and the queue
//! file's read buffer; per attempt, the rewritten header section when the generic map
//! changed it (at most [`MAX_REWRITTEN_HEADER`] bytes of fields are considered; any
//! beyond are sent as they are). Every send (each next hop, each address tried) opens
//! the queue file afresh.

use std::io::{self, BufRead, Read};

use crate::address::Tables;
use crate::headers::SectionPrefix;
use crate::queue::outcome::ContentSource;
use crate::queue::spool::Content;
use crate::queue::{Envelope, EnvelopeDsn};
use crate::smtp::data::DotStuffer;

/// Content goes to the connection in pieces of about this size (one TLS record).
pub const DATA_CHUNK: usize = 16 * 1024;
/// A BDAT chunk's size (the last one is smaller): one command per 64 KB.
pub const BDAT_CHUNK: usize = 64 * 1024;
/// The most of a header section held to rewrite its sender fields.
pub const MAX_REWRITTEN_HEADER: usize = 64 * 1024;

/// One message as it leaves, for every next hop of one attempt.
pub struct Outgoing {
    /// The address of `MAIL FROM`.
    pub mail_from: String,
    source: ContentSource,
    /// The start of the content as rewritten, when the generic map changed it.
    header: Option<RewrittenStart>,
    /// The size of the content as it leaves, before stuffing (`SIZE=`).
    size: u64,
    /// Some byte has the high bit set (`BODY=8BITMIME`).
    eight_bit: bool,
    /// The header has `TLS-Required: No` (RFC 8689 §5).
    tls_required_no: bool,
    /// The envelope's `REQUIRETLS` (RFC 8689): `MAIL FROM` carries it on.
    pub requiretls: bool,
    /// The DSN requests, passed on to a next hop that offers DSN.
    pub dsn: EnvelopeDsn,
}

/// The header fields as the generic map rewrote them, in place of the first
/// `replaced` bytes of the content.
struct RewrittenStart {
    header: Vec<u8>,
    replaced: u64,
}

/// What one pass over the queue file before sending finds.
struct Scan {
    prefix: SectionPrefix,
    size: u64,
    eight_bit: bool,
}

/// Reads the start of the header section (bounded) and looks for an 8-bit byte,
/// stopping at the first; bounded memory (the file's read buffer). Blocking.
fn scan(source: &ContentSource) -> io::Result<Scan> {
    let mut content = source.open()?;
    let size = content.size();
    let prefix = SectionPrefix::read(&mut content, MAX_REWRITTEN_HEADER)?;
    let mut eight_bit = !prefix.bytes.is_ascii();
    while !eight_bit {
        let buf = content.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        eight_bit = !buf.is_ascii();
        let n = buf.len();
        content.consume(n);
    }
    Ok(Scan {
        prefix,
        size,
        eight_bit,
    })
}

impl Outgoing {
    /// `env`'s message as it leaves, with the generic map of `tables` (if any): one
    /// pass over the queue file on the blocking pool for what the envelope commands
    /// need first (the header to rewrite, the size, 8-bit or not). Err: the queue file
    /// cannot be read.
    pub async fn prepare(
        tables: &Tables,
        env: &Envelope,
        source: &ContentSource,
    ) -> io::Result<Outgoing> {
        let mail_from = match tables.rewrite_sender(&env.sender) {
            Some(new) => {
                log::info!(
                    "{}: from=<{}> leaves as <{new}> (--sender-rewrite)",
                    env.id,
                    env.sender
                );
                new
            }
            None => env.sender.clone(),
        };
        let source2 = source.clone();
        let found = crate::runtime::unblock(move || scan(&source2)).await?;
        let tls_required_no = tls_required_no(found.prefix.whole_fields());
        let mut size = found.size;
        let header = tables
            .rewrite_headers(found.prefix.whole_fields())
            .map(|h| {
                size = size - h.rest as u64 + h.header.len() as u64;
                RewrittenStart {
                    header: h.header,
                    replaced: h.rest as u64,
                }
            });
        Ok(Outgoing {
            mail_from,
            source: source.clone(),
            header,
            size,
            eight_bit: found.eight_bit,
            tls_required_no,
            requiretls: env.requiretls,
            dsn: env.dsn.clone(),
        })
    }

    /// The size of the content as it leaves, before dot-stuffing (`SIZE=`, and the
    /// sum of the BDAT chunk sizes).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether the content has 8-bit bytes (`BODY=8BITMIME`).
    pub fn eight_bit(&self) -> bool {
        self.eight_bit
    }

    /// The sender asked that our TLS policy be relaxed for this message
    /// (`TLS-Required: No`, RFC 8689 §5). The field travels on unchanged.
    pub fn tls_required_no(&self) -> bool {
        self.tls_required_no
    }

    /// The content for one DATA: read from the start, in dot-stuffed pieces.
    pub fn body(&self) -> Body<'_> {
        Body {
            msg: self,
            stage: Stage::Header,
            content: None,
            stuffer: Some(DotStuffer::default()),
            piece: Vec::new(),
        }
    }

    /// The content for BDAT: read from the start, as it is, in chunks.
    pub fn chunks(&self) -> Body<'_> {
        Body {
            stuffer: None,
            ..self.body()
        }
    }
}

/// Whether `fields` (a header section) has `TLS-Required: No`, the only value RFC 8689
/// defines (case-insensitive).
fn tls_required_no(fields: &[u8]) -> bool {
    crate::headers::Header::parse(fields)
        .fields
        .iter()
        .any(|f| f.is("TLS-Required") && f.value().eq_ignore_ascii_case("no"))
}

enum Stage {
    Header,
    Content,
    Done,
}

/// One reading of the content: for DATA dot-stuffed pieces, the last one ending with
/// the `.CRLF` line; for BDAT the content's bytes, the last piece possibly empty.
pub struct Body<'a> {
    msg: &'a Outgoing,
    stage: Stage,
    /// The queue file, once opened (and past the replaced header).
    content: Option<Content>,
    /// DATA's stuffing; `None` for BDAT.
    stuffer: Option<DotStuffer>,
    piece: Vec<u8>,
}

impl Body<'_> {
    /// The next piece to send; `None` after the last (for DATA the one that ended
    /// with `.CRLF`). An error means the queue file could not be read: the DATA (or
    /// BDAT transaction) must not be ended.
    pub async fn next(&mut self) -> io::Result<Option<&[u8]>> {
        match self.stage {
            Stage::Header => {
                self.stage = Stage::Content;
                let Some(h) = &self.msg.header else {
                    return self.next_from_file().await;
                };
                self.piece.clear();
                match &mut self.stuffer {
                    Some(stuffer) => stuffer.push(&h.header, &mut self.piece),
                    None => self.piece.extend_from_slice(&h.header),
                }
                Ok(Some(&self.piece))
            }
            Stage::Content => self.next_from_file().await,
            Stage::Done => Ok(None),
        }
    }

    /// BDAT: the next chunk and whether it is the `LAST`; `None` after that one.
    pub async fn next_chunk(&mut self) -> io::Result<Option<(&[u8], bool)>> {
        if self.next().await?.is_none() {
            return Ok(None);
        }
        Ok(Some((&self.piece, matches!(self.stage, Stage::Done))))
    }

    async fn next_from_file(&mut self) -> io::Result<Option<&[u8]>> {
        let opened = self.content.take();
        let (source, skip) = (
            self.msg.source.clone(),
            self.msg.header.as_ref().map_or(0, |h| h.replaced),
        );
        let (mut piece, mut stuffer) = (std::mem::take(&mut self.piece), self.stuffer);
        let (res, piece, stuffer) = crate::runtime::unblock(move || {
            let res = opened
                .map_or_else(|| open_past(&source, skip), Ok)
                .and_then(|mut content| {
                    fill(&mut content, &mut piece, &mut stuffer).map(|end| (content, end))
                });
            (res, piece, stuffer)
        })
        .await;
        self.piece = piece;
        self.stuffer = stuffer;
        let (content, end) = res?;
        if end {
            if let Some(stuffer) = self.stuffer {
                stuffer.finish(&mut self.piece);
            }
            self.stage = Stage::Done;
        } else {
            self.content = Some(content);
        }
        Ok(Some(&self.piece))
    }
}

/// Opens the content and skips the `skip` bytes a rewritten header replaces.
fn open_past(source: &ContentSource, skip: u64) -> io::Result<Content> {
    let mut content = source.open()?;
    let skipped = io::copy(&mut (&mut content).take(skip), &mut io::sink())?;
    if skipped < skip {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "queue file shorter than when it was read",
        ));
    }
    Ok(content)
}

/// Puts the next [`DATA_CHUNK`] or so bytes of `content` into `piece` (emptied first),
/// stuffed; or, without a stuffer, exactly the next [`BDAT_CHUNK`] bytes (fewer at the
/// end). Returns true at the end of the content.
fn fill(
    content: &mut Content,
    piece: &mut Vec<u8>,
    stuffer: &mut Option<DotStuffer>,
) -> io::Result<bool> {
    piece.clear();
    let size = if stuffer.is_some() {
        DATA_CHUNK
    } else {
        BDAT_CHUNK
    };
    while piece.len() < size {
        let buf = content.fill_buf()?;
        if buf.is_empty() {
            return Ok(true);
        }
        let n = buf.len().min(size - piece.len());
        match stuffer {
            Some(stuffer) => stuffer.push(&buf[..n], piece),
            None => piece.extend_from_slice(&buf[..n]),
        }
        content.consume(n);
    }
    // A chunk that ends where the content does is the last.
    Ok(stuffer.is_none() && content.fill_buf()?.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::TablePaths;
    use crate::queue::{QueueId, Spool};
    use crate::smtp::data::dot_stuff;

    /// Every piece of one DATA, concatenated.
    fn sent(msg: &Outgoing) -> Vec<u8> {
        smol::block_on(async {
            let mut body = msg.body();
            let mut all = Vec::new();
            while let Some(piece) = body.next().await.unwrap() {
                assert!(
                    piece.len() <= 2 * DATA_CHUNK,
                    "a piece of {} bytes",
                    piece.len()
                );
                all.extend_from_slice(piece);
            }
            all
        })
    }

    /// The BDAT chunks of one send, and that only the last said it was.
    fn chunked(msg: &Outgoing) -> Vec<Vec<u8>> {
        smol::block_on(async {
            let mut body = msg.chunks();
            let mut all = Vec::new();
            while let Some((piece, last)) = body.next_chunk().await.unwrap() {
                assert!(
                    piece.len() <= BDAT_CHUNK,
                    "a chunk of {} bytes",
                    piece.len()
                );
                all.push(piece.to_vec());
                if last {
                    assert!(body.next_chunk().await.unwrap().is_none());
                    break;
                }
            }
            all
        })
    }

    #[test]
    fn the_content_leaves_stuffed_in_pieces_with_the_rewritten_header() {
        let dir = std::env::temp_dir().join(format!("tinymta-outgoing-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let spool = Spool::open(&dir).unwrap();
        let generic = dir.join("generic");
        std::fs::write(&generic, "@router.lan  @example.com\n").unwrap();
        let paths = TablePaths {
            sender_rewrite: Some(generic),
            ..TablePaths::default()
        };
        let tables = Tables::load(&paths, &["router.lan".to_string()]).unwrap();
        let env = Envelope {
            id: QueueId::generate(),
            arrival: 0,
            sender: "root@router.lan".into(),
            recipients: vec!["x@example.net".into()],
            client: "local".into(),
            protocol: "local".into(),
            unexpanded: false,
            requiretls: false,
            dsn: Default::default(),
        };
        // Dots at line starts around every piece boundary, and one 8-bit byte at the end.
        let mut body = Vec::new();
        while body.len() < 5 * DATA_CHUNK {
            body.extend_from_slice(b".x\r\n..\r\n0123456789abcdef\r\n");
        }
        body.extend_from_slice("caf\u{e9}\r\n".as_bytes());
        let header = b"From: Root <root@router.lan>\r\nSubject: s\r\n\r\n";
        spool.store(&env, &[&header[..], &body].concat()).unwrap();
        let source = ContentSource::new(&spool, &env.id);

        let msg = smol::block_on(Outgoing::prepare(&tables, &env, &source)).unwrap();
        assert_eq!(msg.mail_from, "root@example.com");
        let rewritten = [
            &b"From: Root <root@example.com>\r\nSubject: s\r\n\r\n"[..],
            &body,
        ]
        .concat();
        assert_eq!(msg.size(), rewritten.len() as u64);
        assert!(msg.eight_bit());
        assert_eq!(sent(&msg), dot_stuff(&rewritten));
        // BDAT: the rewritten header, then the rest as it is, in exact chunks.
        let chunks = chunked(&msg);
        assert_eq!(chunks.concat(), rewritten);
        assert_eq!(
            chunks[0],
            b"From: Root <root@example.com>\r\nSubject: s\r\n"
        );
        assert_eq!(chunks[1].len(), BDAT_CHUNK);
        // A second send (the next hop) reads the file again from the start.
        assert_eq!(sent(&msg), dot_stuff(&rewritten));

        // Without a generic map: the content as stored, 7-bit.
        let plain = [&header[..], &body[..body.len() - 7], b"\r\n"].concat();
        spool.store(&env, &plain).unwrap();
        let none = Tables::load(&TablePaths::default(), &[]).unwrap();
        let msg = smol::block_on(Outgoing::prepare(&none, &env, &source)).unwrap();
        assert_eq!((msg.size(), msg.eight_bit()), (plain.len() as u64, false));
        assert_eq!(sent(&msg), dot_stuff(&plain));
        assert!(!msg.tls_required_no());
        assert_eq!(chunked(&msg).concat(), plain);
        // Content that ends at a chunk's end: that chunk is the last.
        let exact: Vec<u8> = body.iter().copied().cycle().take(2 * BDAT_CHUNK).collect();
        spool.store(&env, &exact).unwrap();
        let msg = smol::block_on(Outgoing::prepare(&none, &env, &source)).unwrap();
        let chunks = chunked(&msg);
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks.concat(), exact);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn tls_required_no_is_found_in_the_header_only() {
        assert!(tls_required_no(b"Subject: s\r\nTLS-Required:  no\r\n\r\n"));
        assert!(tls_required_no(b"tls-required: No\r\n"));
        assert!(!tls_required_no(b"TLS-Required: yes\r\n\r\n"));
        assert!(!tls_required_no(b"Subject: s\r\n\r\nTLS-Required: No\r\n"));
    }
}
