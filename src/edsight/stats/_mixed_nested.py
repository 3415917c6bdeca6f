"""The profiled lme4 criterion for nested random effects, from per-group sufficient statistics.

When every level of each random-effect term lies inside exactly one level of the next
(coarser) term — time within student within school, or a single grouping factor — the
Cholesky factor of lme4's penalized least squares system is block diagonal level by
level: eliminating one student touches only its own school and the fixed effects. The
factorisation is then a tree-structured (multifrontal) elimination: each level of a term
owns a small "front" made of its own q x q block, the blocks of its ancestors and the
p + 1 columns of [X y]; the Schur complement left after eliminating it is summed into its
parent's front. Every cross-product is formed once from the rows, so one evaluation costs
O(levels x front^2) and nothing in the number of observations.

Results are the same numbers as :class:`edsight.stats._mixed_pls.PlsProblem` (the general
path, also used for crossed designs); the tests check one against the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import scipy.linalg as sla

from edsight.stats._mixed_pls import ProfiledCriterion, ReBlock, theta_to_factors


def nested_parents(blocks: list[ReBlock]) -> list[np.ndarray] | None:
    """For each term but the last, the level of the next term containing each of its levels.

    None when the terms (ordered by decreasing number of levels) are not a nested chain, or a
    level has no observations.
    """
    parents: list[np.ndarray] = []
    for fine, coarse in pairwise(blocks):
        if np.bincount(fine.codes, minlength=fine.n_levels).min() == 0:
            return None
        parent = np.full(fine.n_levels, -1, dtype=np.int64)
        parent[fine.codes] = coarse.codes
        if not np.array_equal(parent[fine.codes], coarse.codes):
            return None
        parents.append(parent)
    last = blocks[-1]
    if np.bincount(last.codes, minlength=last.n_levels).min() == 0:
        return None
    return parents


@dataclass
class NestedFactorization:
    """The block Cholesky factor, levels last: per term its diagonal blocks and the rows below."""

    factors: list[np.ndarray]  # T_k, the relative covariance factors
    diag: list[np.ndarray]  # per term (q, q, levels): L_kk
    diag_inv: list[np.ndarray]  # per term (q, q, levels): inv(L_kk)
    below: list[np.ndarray]  # per term (rows, q, levels): ancestors' rows, then X, then y
    lxy: np.ndarray  # (p+1, p+1) Cholesky factor of the fixed-effect part


class NestedPls(ProfiledCriterion):
    """Sufficient statistics of a nested design and the profiled criterion over theta.

    Internally the levels of every term are renumbered so that the children of each
    parent level are contiguous (sums into the parent are one ``np.add.reduceat``), and
    arrays keep the level axis last so each small-matrix operation is a few vector
    operations over all levels at once.
    """

    def __init__(
        self, blocks: list[ReBlock], x: np.ndarray, y: np.ndarray, parents: list[np.ndarray], *, reml: bool
    ) -> None:
        self.blocks = blocks
        self.reml = reml
        self.n, self.p = x.shape
        self.evaluations = 0
        xy = np.column_stack([x, y])
        self.axx = xy.T @ xy
        k = len(blocks)
        # renumber levels coarse to fine: rank[j][original level] = internal level
        self.rank: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * k
        self.rank[k - 1] = np.arange(blocks[k - 1].n_levels)
        self.starts: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * (k - 1)
        self.parent: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * (k - 1)
        for j in reversed(range(k - 1)):
            new_parent = self.rank[j + 1][parents[j]]
            order = np.argsort(new_parent, kind="stable")
            rank = np.empty_like(order)
            rank[order] = np.arange(len(order))
            self.rank[j] = rank
            self.parent[j] = new_parent[order]
            # every parent has a child (nested_parents checked that each level has rows), so no
            # empty segment: reduceat would copy a neighbour's value into one
            self.starts[j] = np.searchsorted(self.parent[j], np.arange(blocks[j + 1].n_levels))
        # internal level of every ancestor term, for each internal level of term j
        self.ancestors: list[list[np.ndarray]] = []
        for j in range(k):
            chain: list[np.ndarray] = []
            current = np.arange(blocks[j].n_levels)
            for a in range(j, k - 1):
                current = self.parent[a][current]
                chain.append(current)
            self.ancestors.append(chain)
        # sum over each level of term j of [z_j, z_ancestors..., x, y]' z_j, as (rows, q_j, levels)
        self.panels: list[np.ndarray] = []
        for j, b in enumerate(blocks):
            codes = self.rank[j][b.codes]
            cols = np.column_stack([blk.zcols for blk in blocks[j:]] + [xy])
            panel = np.empty((cols.shape[1], b.q, b.n_levels))
            for r in range(cols.shape[1]):
                for c in range(b.q):
                    panel[r, c] = np.bincount(codes, weights=cols[:, r] * b.zcols[:, c], minlength=b.n_levels)
            self.panels.append(panel)
        self.row_blocks = [[blk.q for blk in blocks[j:]] for j in range(k)]

    def factorize(self, theta: np.ndarray) -> NestedFactorization:
        """Eliminate the terms from the finest to the coarsest, then factor [X y]."""
        factors = theta_to_factors(theta, self.blocks)
        k = len(self.blocks)
        diag: list[np.ndarray] = []
        diag_inv: list[np.ndarray] = []
        below: list[np.ndarray] = []
        pending: np.ndarray | None = None
        lxy_in = self.axx.copy()
        p1 = self.p + 1
        for j, panel in enumerate(self.panels):
            q = self.blocks[j].q
            front = _right_times(panel, factors[j])
            pos = 0
            for size, t in zip(self.row_blocks[j], factors[j:], strict=True):
                front[pos : pos + size] = _left_times(t.T, front[pos : pos + size])
                pos += size
            for i in range(q):
                front[i, i] += 1.0
            if pending is not None:
                front += pending[:, :q]
            low, inv = _cholesky_last(front[:q])
            rows = _times_inv_t(front[q:], inv)
            # the Schur complement left behind: [X y] x [X y] is summed over all levels at once
            # (one matrix product); the ancestors' rows against everything below them are
            # summed per parent level, as the upper triangle of those rows only
            n_anc = rows.shape[0] - p1
            xy_rows = rows[n_anc:].reshape(p1, -1)
            lxy_in -= xy_rows @ xy_rows.T
            diag.append(low)
            diag_inv.append(inv)
            below.append(rows)
            if j < k - 1:
                upper_r, upper_c = _upper_pairs(rows.shape[0], n_anc)
                schur = -_gram_upper(rows, n_anc)
                if pending is not None:
                    schur += pending[q:, q:][upper_r, upper_c]
                summed = np.add.reduceat(schur, self.starts[j], axis=1)
                pending = _symmetric(summed, upper_r, upper_c, rows.shape[0])
        lxy = np.linalg.cholesky(lxy_in)
        self.evaluations += 1
        return NestedFactorization(factors=factors, diag=diag, diag_inv=diag_inv, below=below, lxy=lxy)

    def deviance_parts(self, f: NestedFactorization) -> tuple[float, float, float]:
        """(log|L_theta|^2, log|R_X|^2, penalized residual sum of squares)."""
        logdet_l = 0.0
        for low in f.diag:
            for i in range(low.shape[0]):
                logdet_l += 2.0 * float(np.sum(np.log(low[i, i])))
        d = np.diagonal(f.lxy)
        logdet_rx = 2.0 * float(np.sum(np.log(d[: self.p])))
        return logdet_l, logdet_rx, float(d[-1] ** 2)

    def objective(self, theta: np.ndarray) -> float:
        """REML criterion or ML deviance (-2 log-likelihood), profiled over beta and sigma."""
        try:
            with np.errstate(invalid="ignore", divide="ignore"):
                value = self.criterion(self.factorize(theta))
        except np.linalg.LinAlgError:
            return float("inf")
        return value if np.isfinite(value) else float("inf")

    def solve(self, f: NestedFactorization) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
        """beta, the random effects b per term as (levels, q) arrays, and inv(R_X'R_X)."""
        p = self.p
        rx = f.lxy[:p, :p]
        beta = sla.solve_triangular(rx.T, f.lxy[p, :p], lower=False, check_finite=False)
        k = len(self.blocks)
        u: list[np.ndarray] = [np.empty(0)] * k
        # back-substitution with L', coarsest term first: L_jj' u_j = c_j - (rows below)' [u_anc; beta]
        for j in reversed(range(k)):
            rows = f.below[j]
            nl = rows.shape[2]
            known = [u[a][:, self.ancestors[j][a - j - 1]] for a in range(j + 1, k)]
            known.append(np.broadcast_to(beta[:, None], (p, nl)))
            v = np.concatenate(known, axis=0)
            rhs = rows[-1] - np.einsum("rcl,rl->cl", rows[:-1], v)
            u[j] = np.einsum("dcl,dl->cl", f.diag_inv[j], rhs)  # inv(L_jj)' rhs
        b_list = [(t @ uj).T[rank] for uj, t, rank in zip(u, f.factors, self.rank, strict=True)]
        rx_inv = sla.solve_triangular(rx, np.eye(p), lower=True, check_finite=False)
        return beta, b_list, rx_inv.T @ rx_inv

    def cond_var(self, f: NestedFactorization, sigma2: float) -> list[np.ndarray]:
        """Conditional covariance of b per level, (levels, q, q) per term, as lme4's condVar.

        The diagonal blocks of inv(L_Z L_Z') by the recursion of Takahashi et al. (1973):
        coarsest term first, each level needs only the joint block of its ancestor chain.
        """
        k = len(self.blocks)
        out: list[np.ndarray] = [np.empty(0)] * k
        joint: np.ndarray | None = None  # (chain size, chain size, levels of term j+1)
        for j in reversed(range(k)):
            inv = f.diag_inv[j]
            own = np.einsum("cdl,cel->del", inv, inv)  # inv(L)' inv(L)
            if joint is None:
                sigma_jj = own
                joint = own
            else:
                anc = joint.shape[0]
                rows = f.below[j][:anc]
                sig_anc = joint[:, :, self.ancestors[j][0]]
                cross = -np.einsum("abl,bcl,cdl->adl", sig_anc, rows, inv)  # Sigma(ancestors, j)
                sigma_jj = own - np.einsum("cdl,acl,ael->del", inv, rows, cross)
                q, nl = sigma_jj.shape[0], sigma_jj.shape[2]
                chain = np.empty((q + anc, q + anc, nl))
                chain[:q, :q] = sigma_jj
                chain[q:, :q] = cross
                chain[:q, q:] = np.transpose(cross, (1, 0, 2))
                chain[q:, q:] = sig_anc
                joint = chain
            t = f.factors[j]
            out[j] = sigma2 * np.einsum("ij,jkl,mk->lim", t, sigma_jj, t)[self.rank[j]]
        return out


def _right_times(mat: np.ndarray, t: np.ndarray) -> np.ndarray:
    """mat @ t for mat (rows, q, levels) and a constant q x q t, skipping zero entries of t."""
    q = t.shape[0]
    out = np.zeros((mat.shape[0], t.shape[1], mat.shape[2]))
    for c in range(q):
        for d in range(t.shape[1]):
            if t[c, d] != 0.0:
                out[:, d] += mat[:, c] * t[c, d]
    return out


def _left_times(t: np.ndarray, mat: np.ndarray) -> np.ndarray:
    """t @ mat for a constant t and mat (rows, q, levels), skipping zero entries of t."""
    out = np.zeros((t.shape[0], *mat.shape[1:]))
    for a in range(t.shape[0]):
        for b in range(t.shape[1]):
            if t[a, b] != 0.0:
                out[a] += t[a, b] * mat[b]
    return out


def _cholesky_last(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cholesky factors and their inverses of q x q matrices stacked along the last axis."""
    q = s.shape[0]
    low = np.zeros_like(s)
    for j in range(q):
        d = s[j, j].copy()
        for m in range(j):
            d -= low[j, m] ** 2
        low[j, j] = np.sqrt(d)
        for i in range(j + 1, q):
            acc = s[i, j].copy()
            for m in range(j):
                acc -= low[i, m] * low[j, m]
            low[i, j] = acc / low[j, j]
    inv = np.zeros_like(s)
    for i in range(q):
        inv[i, i] = 1.0 / low[i, i]
        for j in range(i):
            acc = np.zeros_like(s[0, 0])
            for m in range(j, i):
                acc -= low[i, m] * inv[m, j]
            inv[i, j] = acc / low[i, i]
    return low, inv


def _times_inv_t(mat: np.ndarray, inv: np.ndarray) -> np.ndarray:
    """mat @ inv' per level, mat (rows, q, levels), inv lower triangular (q, q, levels)."""
    q = inv.shape[0]
    out = np.zeros_like(mat)
    for c in range(q):
        for d in range(c + 1):
            out[:, c] += mat[:, d] * inv[c, d]
    return out


def _upper_pairs(r: int, n_first: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of the upper triangle of an r x r matrix in its first n_first rows."""
    upper_r, upper_c = np.triu_indices(r)
    keep = upper_r < n_first
    return upper_r[keep], upper_c[keep]


def _gram_upper(rows: np.ndarray, n_first: int) -> np.ndarray:
    """rows @ rows' per level, rows (r, q, levels), in _upper_pairs(r, n_first) order."""
    r, q = rows.shape[0], rows.shape[1]
    out = np.empty((n_first * r - n_first * (n_first - 1) // 2, rows.shape[2]))
    pos = 0
    for a in range(n_first):  # row a against rows a..r-1
        chunk = out[pos : pos + r - a]
        np.multiply(rows[a, 0], rows[a:, 0], out=chunk)
        for c in range(1, q):
            chunk += rows[a, c] * rows[a:, c]
        pos += r - a
    return out


def _symmetric(upper: np.ndarray, upper_r: np.ndarray, upper_c: np.ndarray, r: int) -> np.ndarray:
    """(r, r, levels) symmetric matrices from the given upper-triangle entries; the rest zero."""
    out = np.zeros((r, r, upper.shape[1]))
    out[upper_r, upper_c] = upper
    out[upper_c, upper_r] = upper
    return out
