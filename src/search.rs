//! Full-text search over messages: a tantivy index in `<data>/search`, beside sled.
//!
//! Each channel message and direct message is a document: its id, text, author, channel (0
//! for a direct message), the two parties of a direct message, and its time. Text is NFKC-
//! normalised here and split into words and lowercased by the index's analyzer, at indexing
//! and at query time alike; every query word matches words that start with it.
//!
//! Writes reach the index through a bounded queue and one writer thread that commits at most
//! once a second, so posting never waits for the index. Each commit records the newest message
//! id it holds; at startup the writer re-adds every stored message from shortly before that
//! point (`catch_up`), so messages posted before a crash are found again. Deleted or edited
//! messages whose change was not yet committed are caught when results are read: the caller
//! loads each hit from storage and `matches` checks the current text. `decentd reindex`
//! rebuilds the whole index from storage.

use std::ops::Bound;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tantivy::collector::TopDocs;
use tantivy::directory::MmapDirectory;
use tantivy::query::{BooleanQuery, BoostQuery, Occur, Query, RangeQuery, TermQuery, TermSetQuery};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, FAST, INDEXED, STORED,
};
use tantivy::tokenizer::{LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer};
use tantivy::{doc, Index, IndexReader, IndexWriter, Order, ReloadPolicy, TantivyDocument, Term};
use unicode_normalization::UnicodeNormalization;

/// The analyzer's name in the index.
const ANALYZER: &str = "decentd";
/// Writes waiting for the writer thread, at most.
const QUEUE: usize = 65_536;
/// How often the writer commits while changes wait.
const COMMIT_EVERY: Duration = Duration::from_secs(1);
/// Memory the writer may buffer before it flushes a segment.
const WRITER_MEMORY: usize = 50_000_000;
/// Longest word indexed, in bytes.
const MAX_WORD: usize = 64;

/// Why the index failed.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("search index: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error("search index directory: {0}")]
    Directory(String),
    #[error("search index: {0}")]
    Io(#[from] std::io::Error),
}

/// A message as the index sees it.
#[derive(Debug, Clone)]
pub struct Doc {
    pub id: u64,
    pub text: String,
    pub author: u64,
    /// 0 for a direct message.
    pub channel: u64,
    /// The two users of a direct message.
    pub parties: Option<(u64, u64)>,
    pub created_ms: u64,
}

enum Op {
    Put(Doc),
    Delete(u64),
    DeleteChannel(u64),
    /// Commit now and answer.
    Flush(SyncSender<()>),
    /// Commit and end the writer thread.
    Stop,
}

#[derive(Debug, Clone, Copy)]
struct Fields {
    id: Field,
    text: Field,
    author: Field,
    channel: Field,
    party: Field,
    created: Field,
}

/// What a search asks for.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    pub text: String,
    /// Channels whose messages may be returned.
    pub channels: Vec<u64>,
    /// A user whose direct messages may be returned.
    pub party: Option<u64>,
    pub author: Option<u64>,
    pub after_ms: Option<u64>,
    pub before_ms: Option<u64>,
    pub by_relevance: bool,
    pub skip: usize,
    pub limit: usize,
}

/// The message search index.
pub struct SearchIndex {
    reader: IndexReader,
    fields: Fields,
    queue: SyncSender<Op>,
    /// The lowest id of a message dropped because the queue was full (u64::MAX: none); the
    /// core re-reads from there (`take_overflow`).
    overflow_from: std::sync::atomic::AtomicU64,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchIndex").finish_non_exhaustive()
    }
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text_options = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(ANALYZER)
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    let fields = Fields {
        id: b.add_u64_field("id", INDEXED | FAST | STORED),
        text: b.add_text_field("text", text_options),
        author: b.add_u64_field("author", INDEXED),
        channel: b.add_u64_field("channel", INDEXED),
        party: b.add_u64_field("party", INDEXED),
        created: b.add_u64_field("created", INDEXED | FAST),
    };
    (b.build(), fields)
}

fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_WORD))
        .filter(LowerCaser)
        .build()
}

/// Text as it is indexed and searched: NFKC-normalised.
pub fn normalize(text: &str) -> String {
    text.nfkc().collect()
}

/// The words of a text as the index stores them.
pub fn words(text: &str) -> Vec<String> {
    let mut analyzer = analyzer();
    let normalized = normalize(text);
    let mut stream = analyzer.token_stream(&normalized);
    let mut out = Vec::new();
    while stream.advance() {
        out.push(stream.token().text.clone());
    }
    out
}

/// Whether a text (as it is now) has a word starting with each query word: the check that
/// keeps a stale index entry from answering.
pub fn matches(text: &str, query_words: &[String]) -> bool {
    let have = words(text);
    query_words
        .iter()
        .all(|q| have.iter().any(|w| w.starts_with(q.as_str())))
}

impl SearchIndex {
    /// Opens (or creates) the index in `dir` and starts its writer thread. `Ok(None)` would
    /// never be returned; a corrupt index is an error the caller reports (reindex repairs it).
    pub fn open(dir: &Path) -> Result<(Self, u64), SearchError> {
        std::fs::create_dir_all(dir)?;
        let (schema, fields) = schema();
        let directory =
            MmapDirectory::open(dir).map_err(|e| SearchError::Directory(e.to_string()))?;
        let index = Index::open_or_create(directory, schema)?;
        index.tokenizers().register(ANALYZER, analyzer());
        let committed_through = index
            .load_metas()?
            .payload
            .and_then(|p| p.parse::<u64>().ok())
            .unwrap_or(0);
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::OnCommitWithDelay)
            .try_into()?;
        // The writer is made on its own thread after that thread's priority is lowered, so the
        // indexing and merging threads tantivy starts inherit it: under load, answering
        // requests comes first and the index catches up in the gaps.
        let (queue, ops) = sync_channel(QUEUE);
        let (made, writer_made) = sync_channel(1);
        let for_writer = index.clone();
        let thread = std::thread::Builder::new()
            .name("search-writer".into())
            .spawn(move || {
                lower_priority();
                match for_writer.writer_with_num_threads(1, WRITER_MEMORY) {
                    Ok(writer) => {
                        let _ = made.send(Ok(()));
                        write_loop(writer, fields, ops, committed_through);
                    }
                    Err(e) => {
                        let _ = made.send(Err(e));
                    }
                }
            })?;
        writer_made
            .recv()
            .map_err(|_| SearchError::Directory("the search writer thread ended".into()))??;
        Ok((
            Self {
                reader,
                fields,
                queue,
                overflow_from: std::sync::atomic::AtomicU64::new(u64::MAX),
                writer: Mutex::new(Some(thread)),
            },
            committed_through,
        ))
    }

    fn send(&self, op: Op) {
        match self.queue.try_send(op) {
            Ok(()) => {}
            Err(TrySendError::Full(Op::Put(doc))) => {
                let before = self
                    .overflow_from
                    .fetch_min(doc.id, std::sync::atomic::Ordering::Relaxed);
                if before == u64::MAX {
                    tracing::warn!(
                        "the search index fell behind; the messages it missed are re-read from storage"
                    );
                }
            }
            // A deletion or channel removal: search re-checks every hit against storage, so
            // a missed one never shows; `reindex` drops the stale entry.
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// The lowest id of a message the queue dropped since the last call, if any.
    pub fn take_overflow(&self) -> Option<u64> {
        let from = self
            .overflow_from
            .swap(u64::MAX, std::sync::atomic::Ordering::Relaxed);
        (from != u64::MAX).then_some(from)
    }

    /// Adds or replaces a message.
    pub fn put(&self, doc: Doc) {
        self.send(Op::Put(doc));
    }

    /// Adds or replaces a message, waiting while the queue is full (bulk indexing).
    pub fn put_wait(&self, doc: Doc) {
        let _ = self.queue.send(Op::Put(doc));
    }

    pub fn delete(&self, id: u64) {
        self.send(Op::Delete(id));
    }

    pub fn delete_channel(&self, channel: u64) {
        self.send(Op::DeleteChannel(channel));
    }

    /// Commits what is queued and waits until searches see it.
    pub fn flush(&self) {
        let (done, wait) = sync_channel(1);
        if self.queue.send(Op::Flush(done)).is_ok() {
            let _ = wait.recv_timeout(Duration::from_secs(60));
        }
        let _ = self.reader.reload();
    }

    /// Stops the writer thread after a last commit.
    pub fn close(&self) {
        let _ = self.queue.send(Op::Stop);
        if let Some(thread) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = thread.join();
        }
    }

    /// Message ids matching a query, in the order asked for.
    pub fn search(&self, q: &SearchQuery) -> Result<Vec<u64>, SearchError> {
        let query_words = words(&q.text);
        if query_words.is_empty() || (q.channels.is_empty() && q.party.is_none()) {
            return Ok(Vec::new());
        }
        let f = self.fields;
        let mut must: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for word in &query_words {
            let exact = Term::from_field_text(f.text, word);
            let mut end = word.clone();
            end.push(char::MAX);
            let prefix = RangeQuery::new(
                Bound::Included(exact.clone()),
                Bound::Excluded(Term::from_field_text(f.text, &end)),
            );
            let either = BooleanQuery::new(vec![
                (
                    Occur::Should,
                    Box::new(BoostQuery::new(
                        Box::new(TermQuery::new(exact, IndexRecordOption::WithFreqs)),
                        2.0,
                    )) as Box<dyn Query>,
                ),
                (Occur::Should, Box::new(prefix)),
            ]);
            must.push((Occur::Must, Box::new(either)));
        }
        let mut scope: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        if !q.channels.is_empty() {
            scope.push((
                Occur::Should,
                Box::new(TermSetQuery::new(
                    q.channels
                        .iter()
                        .map(|c| Term::from_field_u64(f.channel, *c)),
                )),
            ));
        }
        if let Some(user) = q.party {
            scope.push((
                Occur::Should,
                Box::new(TermQuery::new(
                    Term::from_field_u64(f.party, user),
                    IndexRecordOption::Basic,
                )),
            ));
        }
        must.push((Occur::Must, Box::new(BooleanQuery::new(scope))));
        if let Some(author) = q.author {
            must.push((
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_u64(f.author, author),
                    IndexRecordOption::Basic,
                )),
            ));
        }
        if q.after_ms.is_some() || q.before_ms.is_some() {
            let low = q.after_ms.map_or(Bound::Unbounded, |t| {
                Bound::Included(Term::from_field_u64(f.created, t))
            });
            let high = q.before_ms.map_or(Bound::Unbounded, |t| {
                Bound::Excluded(Term::from_field_u64(f.created, t))
            });
            must.push((Occur::Must, Box::new(RangeQuery::new(low, high))));
        }
        let query = BooleanQuery::new(must);
        let searcher = self.reader.searcher();
        let top = TopDocs::with_limit(q.limit.max(1)).and_offset(q.skip);
        if q.by_relevance {
            let hits = searcher.search(&query, &top.order_by_score())?;
            let mut ids = Vec::with_capacity(hits.len());
            for (_, address) in hits {
                let doc: TantivyDocument = searcher.doc(address)?;
                if let Some(id) = doc.get_first(f.id).and_then(|v| v.as_u64()) {
                    ids.push(id);
                }
            }
            Ok(ids)
        } else {
            let hits = searcher.search(&query, &top.order_by_u64_field("id", Order::Desc))?;
            Ok(hits.into_iter().filter_map(|(id, _)| id).collect())
        }
    }
}

/// Lowers the calling thread's scheduling priority (nice 10); threads it starts inherit it.
fn lower_priority() {
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), 10) {
        tracing::debug!(error = %e, "cannot lower the search writer's priority");
    }
}

fn commit(writer: &mut IndexWriter<TantivyDocument>, newest: u64) {
    let result = writer.prepare_commit().and_then(|mut prepared| {
        prepared.set_payload(&newest.to_string());
        prepared.commit()
    });
    if let Err(e) = result {
        tracing::error!(error = %e, "search index commit failed");
    }
}

/// The writer thread: applies changes in order and commits at most once a second.
fn write_loop(
    mut writer: IndexWriter<TantivyDocument>,
    f: Fields,
    ops: Receiver<Op>,
    committed_through: u64,
) {
    let mut newest = committed_through;
    let mut dirty = false;
    let mut last_commit = Instant::now();
    loop {
        let wait = if dirty {
            COMMIT_EVERY.saturating_sub(last_commit.elapsed())
        } else {
            Duration::from_secs(3600)
        };
        match ops.recv_timeout(wait) {
            Ok(Op::Put(d)) => {
                writer.delete_term(Term::from_field_u64(f.id, d.id));
                let mut document = doc!(
                    f.id => d.id,
                    f.text => normalize(&d.text),
                    f.author => d.author,
                    f.channel => d.channel,
                    f.created => d.created_ms,
                );
                if let Some((a, b)) = d.parties {
                    document.add_u64(f.party, a);
                    document.add_u64(f.party, b);
                }
                if let Err(e) = writer.add_document(document) {
                    tracing::error!(error = %e, "search index write failed");
                }
                newest = newest.max(d.id);
                dirty = true;
            }
            Ok(Op::Delete(id)) => {
                writer.delete_term(Term::from_field_u64(f.id, id));
                dirty = true;
            }
            Ok(Op::DeleteChannel(channel)) => {
                writer.delete_term(Term::from_field_u64(f.channel, channel));
                dirty = true;
            }
            Ok(Op::Flush(done)) => {
                commit(&mut writer, newest);
                dirty = false;
                last_commit = Instant::now();
                let _ = done.send(());
                continue;
            }
            Ok(Op::Stop) | Err(RecvTimeoutError::Disconnected) => {
                commit(&mut writer, newest);
                return;
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
        if dirty && last_commit.elapsed() >= COMMIT_EVERY {
            commit(&mut writer, newest);
            dirty = false;
            last_commit = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_normalised_lowercased_and_matched_by_prefix() {
        // Fullwidth letters and a ligature become their plain forms under NFKC.
        assert_eq!(words("Ｈｅｌｌｏ, ﬁne WORLD!"), ["hello", "fine", "world"]);
        assert!(matches("Hello wonderful world", &words("WOND hel")));
        assert!(!matches("Hello world", &words("help")));
    }

    #[test]
    fn the_index_finds_by_prefix_scope_author_and_time_and_forgets_deletions() {
        let dir = tempfile::tempdir().unwrap();
        let (index, through) = SearchIndex::open(dir.path()).unwrap();
        assert_eq!(through, 0);
        let put = |id, text: &str, author, channel, parties| {
            index.put(Doc {
                id,
                text: text.into(),
                author,
                channel,
                parties,
                created_ms: id * 1000,
            })
        };
        put(1, "The quick brown fox", 7, 100, None);
        put(2, "a quicker fox", 8, 100, None);
        put(3, "quick in another channel", 7, 200, None);
        put(4, "quick and private", 7, 0, Some((7, 9)));
        index.flush();
        let ask = |text: &str, channels: Vec<u64>, party: Option<u64>| {
            index
                .search(&SearchQuery {
                    text: text.into(),
                    channels,
                    party,
                    limit: 10,
                    ..Default::default()
                })
                .unwrap()
        };
        assert_eq!(ask("QUICK", vec![100], None), [2, 1]);
        assert_eq!(ask("quick fox", vec![100, 200], None), [2, 1]);
        assert_eq!(ask("quick", vec![100, 200], Some(9)), [4, 3, 2, 1]);
        assert_eq!(ask("quick", vec![], Some(8)), Vec::<u64>::new());
        assert_eq!(ask("", vec![100], None), Vec::<u64>::new());
        let by_author = index
            .search(&SearchQuery {
                text: "quick".into(),
                channels: vec![100, 200],
                author: Some(7),
                after_ms: Some(2000),
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(by_author, [3]);
        // Relevance: the exact word outranks the longer one.
        let ranked = index
            .search(&SearchQuery {
                text: "quick".into(),
                channels: vec![100],
                by_relevance: true,
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(ranked[0], 1);
        index.delete(1);
        index.delete_channel(200);
        index.flush();
        assert_eq!(ask("quick", vec![100, 200], None), [2]);
        index.close();

        let (reopened, through) = SearchIndex::open(dir.path()).unwrap();
        assert_eq!(through, 4);
        assert_eq!(
            reopened
                .search(&SearchQuery {
                    text: "fox".into(),
                    channels: vec![100],
                    limit: 10,
                    ..Default::default()
                })
                .unwrap(),
            [2]
        );
        reopened.close();
    }
}
