"""lme4's penalized least squares (Bates et al. 2015, JSS 67(1)) on precomputed cross-products.

The random-effect terms are ordered by decreasing number of levels (as lme4 does). The
first term's block of Lambda'Z'Z Lambda + I is block diagonal (one q x q block per level),
so its Cholesky factor is a batch of tiny factorisations; the remaining terms plus [X y]
form one dense Schur complement of modest size (for time within student within school:
2 x schools + p + 1 rows). Every cross-product of Z, X and y is formed once, so one
evaluation of the profiled deviance costs nothing in the number of observations.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

_LOG2PI = float(np.log(2.0 * np.pi))


@dataclass
class ReBlock:
    """One random-effect term: level codes, its model-matrix columns and sizes."""

    codes: np.ndarray  # (n,) int level index
    n_levels: int
    zcols: np.ndarray  # (n, q)

    @property
    def q(self) -> int:
        """Columns per level."""
        return int(self.zcols.shape[1])

    def sparse_z(self) -> sp.csr_matrix:
        """The n x (levels*q) indicator-times-covariate matrix, columns level-major."""
        n, q = self.zcols.shape
        rows = np.repeat(np.arange(n), q)
        cols = (self.codes[:, None] * q + np.arange(q)[None, :]).ravel()
        return sp.csr_matrix((self.zcols.ravel(), (rows, cols)), shape=(n, self.n_levels * q))


def theta_lower(blocks: list[ReBlock]) -> np.ndarray:
    """Lower bounds of theta (0 on the diagonals of each relative covariance factor)."""
    out: list[float] = []
    for b in blocks:
        for j in range(b.q):
            for i in range(j, b.q):
                out.append(0.0 if i == j else -np.inf)
    return np.array(out)


def theta_start(blocks: list[ReBlock]) -> np.ndarray:
    """lme4's starting value: identity relative covariance factors."""
    out: list[float] = []
    for b in blocks:
        for j in range(b.q):
            for i in range(j, b.q):
                out.append(1.0 if i == j else 0.0)
    return np.array(out)


def theta_to_factors(theta: np.ndarray, blocks: list[ReBlock]) -> list[np.ndarray]:
    """Split theta into the lower-triangular q x q factors T_i (column-major, as lme4)."""
    factors: list[np.ndarray] = []
    pos = 0
    for b in blocks:
        t = np.zeros((b.q, b.q))
        rows, cols = np.tril_indices(b.q)
        order = np.lexsort((rows, cols))  # column-major order of the lower triangle
        k = len(rows)
        t[rows[order], cols[order]] = theta[pos : pos + k]
        factors.append(t)
        pos += k
    return factors


@dataclass
class Factorization:
    """Everything one deviance evaluation produces and the estimates need."""

    l11: np.ndarray  # (l1, q1, q1) Cholesky factors of the first term's blocks
    linv11: np.ndarray  # (l1, q1, q1) their inverses
    m1: np.ndarray  # (l1, q1, q1) T1 @ inv(L11_l).T
    lz1: list[np.ndarray]  # per other term, (blocks, q_r, q1) off-diagonal factor blocks
    lx1: np.ndarray  # (p+1, l1, q1) off-diagonal factor rows for [X y]
    lc: np.ndarray  # (mz+p+1, mz+p+1) Cholesky of the Schur complement
    factors: list[np.ndarray]


@dataclass
class Estimates:
    """The estimates at one theta: criterion, residual variance, fixed and random effects."""

    criterion: float
    sigma2: float
    beta: np.ndarray
    beta_cov: np.ndarray
    ranef: list[np.ndarray]  # per term, (levels, q) conditional modes
    cond_var: list[np.ndarray]  # per term, (levels, q, q) conditional covariances
    factors: list[np.ndarray]  # per term, T_k


class ProfiledCriterion(ABC):
    """What both solvers derive the same way from their factorisation: the profiled REML/ML
    criterion, the residual variance and the reported estimates."""

    n: int
    p: int
    reml: bool

    # Each solver's own: the factorisation and what is read from it.
    @abstractmethod
    def factorize(self, theta: np.ndarray) -> Any: ...

    @abstractmethod
    def deviance_parts(self, f: Any) -> tuple[float, float, float]: ...

    @abstractmethod
    def solve(self, f: Any) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]: ...

    @abstractmethod
    def cond_var(self, f: Any, sigma2: float) -> list[np.ndarray]: ...

    def criterion(self, f: Any) -> float:
        """The criterion for a factorisation already computed."""
        logdet_l, logdet_rx, r2 = self.deviance_parts(f)
        if self.reml:
            dof = self.n - self.p
            return logdet_l + logdet_rx + dof * (1.0 + _LOG2PI + np.log(r2 / dof))
        return logdet_l + self.n * (1.0 + _LOG2PI + np.log(r2 / self.n))

    def sigma2(self, f: Any) -> float:
        """Residual variance estimate at this factorisation."""
        r2 = self.deviance_parts(f)[2]
        return r2 / (self.n - self.p if self.reml else self.n)

    def estimates(self, theta: np.ndarray) -> Estimates:
        """Everything the fitted model reports, at the optimum theta."""
        f = self.factorize(theta)
        sigma2 = self.sigma2(f)
        beta, b_list, xtx_inv = self.solve(f)
        return Estimates(
            criterion=self.criterion(f),
            sigma2=sigma2,
            beta=beta,
            beta_cov=sigma2 * xtx_inv,
            ranef=b_list,
            cond_var=self.cond_var(f, sigma2),
            factors=f.factors,
        )


class PlsProblem(ProfiledCriterion):
    """Cross-products of Z, X and y, and the profiled deviance as a function of theta."""

    def __init__(self, blocks: list[ReBlock], x: np.ndarray, y: np.ndarray, *, reml: bool) -> None:
        self.blocks = blocks
        self.reml = reml
        self.n, self.p = x.shape
        first, rest = blocks[0], blocks[1:]
        xy = np.column_stack([x, y])
        q1, l1 = first.q, first.n_levels
        self.a11 = np.zeros((l1, q1, q1))
        for i in range(q1):
            for j in range(i + 1):
                w = np.bincount(first.codes, weights=first.zcols[:, i] * first.zcols[:, j], minlength=l1)
                self.a11[:, i, j] = w
                self.a11[:, j, i] = w
        self.ax1 = np.zeros((xy.shape[1], l1, q1))
        for c in range(q1):
            for k in range(xy.shape[1]):
                self.ax1[k, :, c] = np.bincount(
                    first.codes, weights=first.zcols[:, c] * xy[:, k], minlength=l1
                )
        self.axx = xy.T @ xy
        self.mz = sum(b.n_levels * b.q for b in rest)
        self.offsets = np.cumsum([0] + [b.n_levels * b.q for b in rest]).tolist()
        # Z_r'Z_1 kept as dense q_r x q1 blocks, one per (level of term r, level of term 1) pair
        self.pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for b in rest:
            key = b.codes.astype(np.int64) * l1 + first.codes
            uniq, inv = np.unique(key, return_inverse=True)
            vals = np.empty((len(uniq), b.q, q1))
            for i in range(b.q):
                for j in range(q1):
                    vals[:, i, j] = np.bincount(
                        inv, weights=b.zcols[:, i] * first.zcols[:, j], minlength=len(uniq)
                    )
            self.pairs.append((uniq // l1, uniq % l1, vals))
        # products of blocks that share a level of term 1, for the Schur complement
        self.cross: list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]] = []
        mz = self.mz
        for a in range(len(rest)):
            for c in range(a, len(rest)):
                ia, ic = _shared_first_level(self.pairs[a][1], self.pairs[c][1])
                qa, qc = rest[a].q, rest[c].q
                ra = self.offsets[a] + self.pairs[a][0][ia][:, None] * qa + np.arange(qa)[None, :]
                rc = self.offsets[c] + self.pairs[c][0][ic][:, None] * qc + np.arange(qc)[None, :]
                flat = (ra[:, :, None] * mz + rc[:, None, :]).ravel()
                self.cross.append((a, c, ia, ic, flat))
        self.pair_cols = [
            (self.offsets[k] + rows[:, None] * b.q + np.arange(b.q)[None, :]).ravel()
            for k, ((rows, _l, _v), b) in enumerate(zip(self.pairs, rest, strict=True))
        ]
        if rest:
            zr = sp.hstack([b.sparse_z() for b in rest], format="csr")
            self.azrzr = (zr.T @ zr).toarray()
            self.axzr = np.asarray((zr.T @ xy).T)
        else:
            self.azrzr = np.zeros((0, 0))
            self.axzr = np.zeros((xy.shape[1], 0))
        self.evaluations = 0

    def _left_lambda_t(self, mat: np.ndarray, factors: list[np.ndarray]) -> np.ndarray:
        """Lambda_r' @ mat for the rest terms (mat has mz rows)."""
        out = np.empty_like(mat)
        for k, (b, t) in enumerate(zip(self.blocks[1:], factors[1:], strict=True)):
            lo, hi = self.offsets[k], self.offsets[k + 1]
            blk = mat[lo:hi].reshape(b.n_levels, b.q, -1)
            out[lo:hi] = (t.T @ blk).reshape(hi - lo, -1)
        return out

    def factorize(self, theta: np.ndarray) -> Factorization:
        """Cholesky factor of the full PLS system at theta."""
        factors = theta_to_factors(theta, self.blocks)
        t1 = factors[0]
        l1, q1 = self.a11.shape[0], self.a11.shape[1]
        s11 = t1.T @ self.a11 @ t1 + np.eye(q1)
        l11, linv = batched_cholesky(s11)
        m1 = t1 @ np.transpose(linv, (0, 2, 1))  # T1 @ inv(L11).T per level
        lx1 = np.einsum("klq,lqr->klr", self.ax1, m1)
        mz = self.mz
        p1 = self.axx.shape[0]
        c = np.empty((mz + p1, mz + p1))
        lx1f = lx1.reshape(p1, l1 * q1)
        c[mz:, mz:] = self.axx - lx1f @ lx1f.T
        lz1: list[np.ndarray] = []
        if mz:
            for k, (_rows, levs, vals) in enumerate(self.pairs):
                lz1.append(factors[k + 1].T @ vals @ m1[levs])
            czz = self._left_lambda_t(self._left_lambda_t(self.azrzr, factors).T, factors) + np.eye(mz)
            for a, b2, ia, ic, flat in self.cross:
                prod = lz1[a][ia] @ np.transpose(lz1[b2][ic], (0, 2, 1))
                sub = np.bincount(flat, weights=prod.ravel(), minlength=mz * mz).reshape(mz, mz)
                czz -= sub if a == b2 else sub + sub.T
            c[:mz, :mz] = czz
            cxz = self._left_lambda_t(self.axzr.T, factors).T
            for k, (_rows, levs, _vals) in enumerate(self.pairs):
                contrib = np.einsum("knq,niq->kni", lx1[:, levs, :], lz1[k])
                cols = self.pair_cols[k]
                for row in range(p1):
                    cxz[row] -= np.bincount(cols, weights=contrib[row].ravel(), minlength=mz)
            c[mz:, :mz] = cxz
            c[:mz, mz:] = cxz.T
        lc = sla.cholesky(c, lower=True, check_finite=False)
        self.evaluations += 1
        return Factorization(l11=l11, linv11=linv, m1=m1, lz1=lz1, lx1=lx1, lc=lc, factors=factors)

    def deviance_parts(self, f: Factorization) -> tuple[float, float, float]:
        """(log|L_theta|^2, log|R_X|^2, penalized residual sum of squares)."""
        mz, p = self.mz, self.p
        d11 = np.diagonal(f.l11, axis1=1, axis2=2)
        dc = np.diagonal(f.lc)
        logdet_l = 2.0 * float(np.sum(np.log(d11))) + 2.0 * float(np.sum(np.log(dc[:mz])))
        logdet_rx = 2.0 * float(np.sum(np.log(dc[mz : mz + p])))
        return logdet_l, logdet_rx, float(dc[-1] ** 2)

    def objective(self, theta: np.ndarray) -> float:
        """REML criterion or ML deviance (-2 log-likelihood), profiled over beta and sigma."""
        try:
            f = self.factorize(theta)
        except (np.linalg.LinAlgError, sla.LinAlgError):
            return float("inf")
        return self.criterion(f)

    def lz1_matrix(self, f: Factorization) -> sp.csr_matrix:
        """The off-diagonal factor rows of the other terms as one sparse (mz, l1*q1) matrix."""
        l1, q1 = f.l11.shape[0], f.l11.shape[1]
        rr: list[np.ndarray] = []
        cc: list[np.ndarray] = []
        vv: list[np.ndarray] = []
        for k, ((rows, levs, _v), blk) in enumerate(zip(self.pairs, f.lz1, strict=True)):
            q = self.blocks[k + 1].q
            r_idx = self.offsets[k] + rows[:, None] * q + np.arange(q)[None, :]
            c_idx = levs[:, None] * q1 + np.arange(q1)[None, :]
            rr.append(np.broadcast_to(r_idx[:, :, None], blk.shape).ravel())
            cc.append(np.broadcast_to(c_idx[:, None, :], blk.shape).ravel())
            vv.append(blk.ravel())
        if not vv:
            return sp.csr_matrix((0, l1 * q1))
        return sp.csr_matrix(
            (np.concatenate(vv), (np.concatenate(rr), np.concatenate(cc))), shape=(self.mz, l1 * q1)
        )

    def solve(self, f: Factorization) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
        """beta, the random effects b per term as (levels, q) arrays, and inv(R_X'R_X)."""
        mz, p = self.mz, self.p
        lc = f.lc
        ly = lc[-1, : mz + p]
        upper = lc[: mz + p, : mz + p]
        sol = sla.solve_triangular(upper.T, ly, lower=False, check_finite=False)
        beta = sol[mz:]
        u_rest = sol[:mz]
        l1, q1 = f.l11.shape[0], f.l11.shape[1]
        rhs = f.lx1[-1] - np.einsum("klq,k->lq", f.lx1[:p], beta)
        if mz:
            rhs -= (self.lz1_matrix(f).T @ u_rest).reshape(l1, q1)
        u1 = np.linalg.solve(np.transpose(f.l11, (0, 2, 1)), rhs[:, :, None])[:, :, 0]
        b_list = [u1 @ f.factors[0].T]
        pos = 0
        for blk, t in zip(self.blocks[1:], f.factors[1:], strict=True):
            size = blk.n_levels * blk.q
            b_list.append(u_rest[pos : pos + size].reshape(blk.n_levels, blk.q) @ t.T)
            pos += size
        rx = lc[mz : mz + p, mz : mz + p]
        rx_inv = sla.solve_triangular(rx, np.eye(p), lower=True, check_finite=False)
        return beta, b_list, rx_inv.T @ rx_inv

    def cond_var(self, f: Factorization, sigma2: float) -> list[np.ndarray]:
        """Conditional covariance of b per level, (levels, q, q) per term, as lme4's condVar."""
        mz = self.mz
        l1, q1 = f.l11.shape[0], f.l11.shape[1]
        linv11 = f.linv11
        out: list[np.ndarray] = []
        middle = np.broadcast_to(np.eye(q1), (l1, q1, q1)).copy()
        if mz:
            lzz = f.lc[:mz, :mz]
            lzz_inv = sla.solve_triangular(lzz, np.eye(mz), lower=True, check_finite=False)
            rest_inner = lzz_inv.T @ lzz_inv  # inv(Lzz Lzz')
            # the (1,1) block of inv(LL') is inv(L11)'(I + Lz1' inv(Lzz Lzz') Lz1) inv(L11); Lz1's
            # column for a level touches only the blocks of that level, so sum over block pairs
            flat_p = rest_inner.ravel()
            for a, c, ia, ic, flat in self.cross:
                qa, qc = self.blocks[a + 1].q, self.blocks[c + 1].q
                psub = flat_p[flat].reshape(len(ia), qa, qc)
                term = np.transpose(f.lz1[a][ia], (0, 2, 1)) @ psub @ f.lz1[c][ic]
                levs = self.pairs[a][1][ia]
                np.add.at(middle, levs, term)
                if a != c:
                    np.add.at(middle, levs, np.transpose(term, (0, 2, 1)))
        inner = np.transpose(linv11, (0, 2, 1)) @ middle @ linv11
        t1 = f.factors[0]
        out.append(sigma2 * np.einsum("ij,ljk,mk->lim", t1, inner, t1))
        pos = 0
        for blk, t in zip(self.blocks[1:], f.factors[1:], strict=True):
            q, nl = blk.q, blk.n_levels
            idx = pos + np.arange(nl)[:, None] * q + np.arange(q)[None, :]
            sub = rest_inner[idx[:, :, None], idx[:, None, :]]
            out.append(sigma2 * np.einsum("ij,ljk,mk->lim", t, sub, t))
            pos += nl * q
        return out


def _shared_first_level(la: np.ndarray, lc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All index pairs (i, j) with la[i] == lc[j]: blocks in the same column of L."""
    order_c = np.argsort(lc, kind="stable")
    sorted_c = lc[order_c]
    start = np.searchsorted(sorted_c, la, side="left")
    stop = np.searchsorted(sorted_c, la, side="right")
    counts = stop - start
    ia = np.repeat(np.arange(len(la)), counts)
    offs = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    ic = order_c[np.repeat(start, counts) + offs]
    return ia, ic


def batched_cholesky(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cholesky factors and their inverses of a stack of small SPD matrices.

    Closed forms for 1 x 1 and 2 x 2 (random intercepts, intercept + slope) avoid numpy's
    per-matrix LAPACK overhead, which dominates for hundreds of thousands of tiny blocks.
    """
    q = s.shape[1]
    if q == 1:
        root = np.sqrt(s)
        return root, 1.0 / root
    if q == 2:
        l00 = np.sqrt(s[:, 0, 0])
        l10 = s[:, 1, 0] / l00
        l11 = np.sqrt(s[:, 1, 1] - l10 * l10)
        low = np.zeros_like(s)
        inv = np.zeros_like(s)
        low[:, 0, 0], low[:, 1, 0], low[:, 1, 1] = l00, l10, l11
        inv[:, 0, 0], inv[:, 1, 1] = 1.0 / l00, 1.0 / l11
        inv[:, 1, 0] = -l10 / (l00 * l11)
        return low, inv
    low = np.linalg.cholesky(s)
    return low, np.linalg.inv(low)
