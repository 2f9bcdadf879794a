"""Speed kernels behind the models: each computes exactly what a few lines of autograd would,
with a written-out backward pass, and is tested against autograd on small inputs.

- :mod:`~vgae_toolkit.ops.sparse`: CSR products with a cached transpose (:class:`SparseMatrix`), ``A^T @ D`` by blocks.
- :mod:`~vgae_toolkit.ops.pairs`: inner-product logits of node pairs, their gradient plans, the sampled BCE.
- :mod:`~vgae_toolkit.ops.dense`: the weighted BCE over all N^2 pairs in blocks, without an N x N matrix.
- :mod:`~vgae_toolkit.ops.sampling`: the reparameterised sample and the mean KL to N(0, I) in one node.
- :mod:`~vgae_toolkit.ops.attention`: attention-weighted neighbour sums of GAT layers as one bag product.
- :mod:`~vgae_toolkit.ops.hadamard`: the Hadamard-MLP edge decoder (dropout included) in cache-sized chunks.
- :mod:`~vgae_toolkit.ops.dropout`: dropout masks from 16-bit lanes of random words (cheaper than ``bernoulli_``).
- :mod:`~vgae_toolkit.ops.masking`: edge and path masking (MaskGAE) and dropout on sparse features.
- :mod:`~vgae_toolkit.ops.iw`: the importance-weighted log-likelihood in cache-sized pieces.
- :mod:`~vgae_toolkit.ops.optim`: Adam's fused update called without the optimiser's per-step bookkeeping.
"""
