// fl_shuffle.h -- header-only C99 kernels that shuffle token sequences for shuffled references
// (genomics): a plain shuffle and the k-let preserving shuffle (k = 2: the dinucleotide shuffle
// of deeplift / tangermeme / ChromBPNet). fastlift/_genomics.pyx drives them with OpenMP; any C
// extension can include this header (fastlift.get_include()) and call them directly.
//
// Tokens
// ------
// A sequence is `length` tokens in [0, n_symbols). For one-hot DNA, token c < n_channels is the
// base whose channel holds the 1 and token n_channels stands for an all-zero row (N or any other
// letter), so n_symbols = n_channels + 1 and N is shuffled as a fifth letter, as deeplift's
// dinuc_shuffle does: every k-let count, N-containing ones included, is kept.
//
// Randomness: reproducible and independent of batching and threads
// -----------------------------------------------------------------
// Shuffle number `shuffle_index` of the sequence numbered `seq_index` uses its own stream,
// splitmix64 started from a state hashed from (seed, seq_index, shuffle_index, kmer). So a
// shuffle depends on those four numbers and the sequence only: not on how many sequences are
// in a call, their order, the thread count or which thread runs it. Bounded integers use
// rejection sampling (no modulo bias). The streams are not cryptographic; splitmix64 passes
// BigCrush, which is ample for choosing permutations.
//
// The k-let shuffle (Altschul & Erickson 1985; Kandel et al. 1996; deeplift's dinuc_shuffle)
// ------------------------------------------------------------------------------------------
// Vertices are the (k-1)-lets of the sequence, v_i = tok[i .. i+k-2] for i = 0 .. length-k+1,
// and the sequence is a walk using every edge i: v_i -> v_{i+1} (i = 0 .. length-k) once. Any
// other Eulerian walk from v_0 spells a sequence with the same first (k-1)-let, the same last
// (k-1)-let and the same count of every k-let. For each vertex, keep its edges in order of
// occurrence, leave its last out-edge in place and permute the others uniformly (Fisher-Yates,
// vertices in order of first occurrence): the kept last out-edges form a tree towards the final
// vertex, so the walk that takes each vertex's edges in the permuted order always uses every
// edge (the Altschul-Erickson condition). For k = 2 this is deeplift's algorithm exactly, with
// a different random source. With k = 2 the first and last letters are kept; with k >= 2 the
// first and last (k-1) letters are.
//
// Vertex ids are the (k-1)-lets read as base-n_symbols numbers, so the workspace holds dense
// per-vertex arrays of n_symbols^(k-1) entries (callers bound it; FL_SHUFFLE_MAX_VERTICES).
//
// Layouts: tok__l, out__l: (length,) uint8_t, contiguous. Workspace: int64_t, at least
// fl_shuffle_workspace_size(length, n_symbols, kmer) entries, owned by the calling thread; it
// needs no initialisation and is left reusable for the next call.
#ifndef FL_SHUFFLE_H
#define FL_SHUFFLE_H

#include <stdint.h>
#include <string.h>

#define FL_SHUFFLE_MAX_VERTICES (1 << 22)

// ------------------------------------------------------------------------ random numbers
static inline uint64_t fli_mix64(uint64_t z) {
    // splitmix64's output function (Stafford variant 13): a bijective avalanche mix.
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static inline uint64_t fli_rng_next(uint64_t *state) {
    *state += 0x9E3779B97F4A7C15ULL;  // golden-ratio Weyl increment
    return fli_mix64(*state);
}

// Initial state of the stream of (seed, seq_index, shuffle_index, kmer).
static inline uint64_t fli_shuffle_stream(uint64_t seed, int64_t seq_index, int64_t shuffle_index,
                                         int kmer) {
    uint64_t s = fli_mix64(seed + 0x243F6A8885A308D3ULL);
    s = fli_mix64(s ^ ((uint64_t)seq_index + 0x13198A2E03707344ULL));
    s = fli_mix64(s ^ ((uint64_t)shuffle_index + 0xA4093822299F31D0ULL));
    return fli_mix64(s ^ ((uint64_t)kmer + 0x082EFA98EC4E6C89ULL));
}

// Uniform integer in [0, n), n >= 1, by rejection (the top 2^64 mod n values are redrawn).
static inline uint64_t fli_rng_below(uint64_t *state, uint64_t n) {
    uint64_t threshold = (0 - n) % n;  // = 2^64 mod n
    uint64_t r;
    do {
        r = fli_rng_next(state);
    } while (r < threshold);
    return r % n;
}

// ------------------------------------------------------------------------ kernels
// Workspace entries that fl_kmer_shuffle needs (0 for plain shuffles and short sequences).
static inline int64_t fl_shuffle_workspace_size(int64_t length, int64_t n_symbols, int kmer) {
    int64_t n_vertices = 1;
    int j;
    if (kmer < 2 || length <= kmer)
        return length > 0 ? length : 1;
    for (j = 0; j < kmer - 1; j++)
        n_vertices *= n_symbols;
    // vertex id per position, successor per edge, then per-vertex count, start and cursor
    return 2 * length + 3 * n_vertices;
}

// Number of vertices for k-lets over n_symbols, or -1 when above FL_SHUFFLE_MAX_VERTICES.
static inline int64_t fl_shuffle_n_vertices(int64_t n_symbols, int kmer) {
    int64_t n_vertices = 1;
    int j;
    for (j = 0; j < kmer - 1; j++) {
        n_vertices *= n_symbols;
        if (n_vertices > FL_SHUFFLE_MAX_VERTICES)
            return -1;
    }
    return n_vertices;
}

// Plain shuffle: a uniform permutation of all positions (Fisher-Yates from the end).
static inline void fli_plain_shuffle(const uint8_t *tok__l, int64_t length, uint64_t *rng,
                                    uint8_t *out__l) {
    int64_t i, j;
    uint8_t t;
    memcpy(out__l, tok__l, (size_t)length);
    for (i = length - 1; i > 0; i--) {
        j = (int64_t)fli_rng_below(rng, (uint64_t)i + 1);
        t = out__l[i];
        out__l[i] = out__l[j];
        out__l[j] = t;
    }
}

// k-let preserving shuffle (kmer >= 2); see the header comment for the algorithm.
// work: fl_shuffle_workspace_size(length, n_symbols, kmer) int64_t entries.
static inline void fli_klet_shuffle(const uint8_t *tok__l, int64_t length, int64_t n_symbols,
                                   int kmer, uint64_t *rng, uint8_t *out__l, int64_t *work) {
    int64_t n_vertices = fl_shuffle_n_vertices(n_symbols, kmer);
    int64_t n_pos = length - kmer + 2;      // vertices along the sequence: v_0 .. v_{n_pos-1}
    int64_t n_edges = n_pos - 1;
    int64_t *vid = work;                     // (n_pos,) vertex id at each position
    int64_t *succ = work + length;           // (n_edges,) successor position, grouped by vertex
    int64_t *count = work + 2 * length;      // (n_vertices,) out-degree
    int64_t *start = count + n_vertices;     // (n_vertices,) first edge slot of the vertex
    int64_t *cursor = start + n_vertices;    // (n_vertices,) next slot to fill / to walk
    int64_t i, j, v, c, top = 1, cur, s, t;
    for (j = 0; j < kmer - 2; j++)
        top *= n_symbols;                    // weight of the first letter of a (k-1)-let
    // vertex ids by a rolling base-n_symbols number
    v = 0;
    for (j = 0; j < kmer - 1; j++)
        v = v * n_symbols + tok__l[j];
    vid[0] = v;
    for (i = 1; i < n_pos; i++) {
        v = (v - tok__l[i - 1] * top) * n_symbols + tok__l[i + kmer - 2];
        vid[i] = v;
    }
    // clear only the vertices that occur (the workspace is reused without a full reset)
    for (i = 0; i < n_pos; i++)
        count[vid[i]] = 0;
    for (i = 0; i < n_edges; i++)
        count[vid[i]]++;
    // slots grouped by vertex, vertices in order of first occurrence: a counting sort that stays
    // O(length) by walking positions, never all n_vertices ids
    for (i = 0; i < n_pos; i++)
        start[vid[i]] = -1;
    s = 0;
    for (i = 0; i < n_edges; i++) {
        v = vid[i];
        if (start[v] < 0) {
            start[v] = s;
            s += count[v];
        }
    }
    for (i = 0; i < n_edges; i++)
        cursor[vid[i]] = start[vid[i]];
    for (i = 0; i < n_edges; i++)
        succ[cursor[vid[i]]++] = i + 1;      // out-edges of each vertex in order of occurrence
    // permute all but the last out-edge of each vertex, vertices in order of first occurrence
    // (a fixed order: the stream is consumed identically on every machine)
    for (i = 0; i < n_edges; i++) {
        v = vid[i];
        if (cursor[v] < 0)
            continue;                        // already permuted
        c = count[v] - 1;
        for (j = c - 1; j > 0; j--) {
            int64_t r = (int64_t)fli_rng_below(rng, (uint64_t)j + 1);
            t = succ[start[v] + j];
            succ[start[v] + j] = succ[start[v] + r];
            succ[start[v] + r] = t;
        }
        cursor[v] = -1;
    }
    for (i = 0; i < n_edges; i++)
        cursor[vid[i]] = start[vid[i]];
    // walk from v_0, emitting the last letter of each vertex reached
    for (j = 0; j < kmer - 1; j++)
        out__l[j] = tok__l[j];
    cur = vid[0];
    for (i = kmer - 1; i < length; i++) {
        s = succ[cursor[cur]++];
        out__l[i] = tok__l[s + kmer - 2];
        cur = vid[s];
    }
}

// One shuffle of one sequence: kmer == 1 plain, kmer >= 2 k-let preserving. Sequences shorter
// than kmer + 1 have a single arrangement and are copied. The stream is that of
// (seed, seq_index, shuffle_index, kmer).
static inline void fl_kmer_shuffle(const uint8_t *tok__l, int64_t length, int64_t n_symbols, int kmer,
                                   uint64_t seed, int64_t seq_index, int64_t shuffle_index,
                                   uint8_t *out__l, int64_t *work) {
    uint64_t rng = fli_shuffle_stream(seed, seq_index, shuffle_index, kmer);
    if (length <= 0)
        return;
    if (kmer <= 1) {
        fli_plain_shuffle(tok__l, length, &rng, out__l);
    } else if (length <= kmer) {
        memcpy(out__l, tok__l, (size_t)length);
    } else {
        fli_klet_shuffle(tok__l, length, n_symbols, kmer, &rng, out__l, work);
    }
}

#endif  // FL_SHUFFLE_H
