"""Caption decoding over any head that has ``forward``/``start``/``step``."""
import torch


@torch.no_grad()
def greedy_decode(head, memory, mem_mask, bos_id, eos_id, max_steps, use_cache=True):
    """Most likely next word at each step, for a batch of videos.

    Args:
        max_steps (int): most tokens generated per caption, EOS included.
        use_cache (bool): feed one new token per step through the key/value cache;
            False re-runs the whole head on the full prefix every step, as the
            reference implementation does (slow, kept for checking).

    Returns:
        LongTensor ``(B, <=max_steps)``: generated ids; after EOS, EOS repeats.
    """
    b = memory.shape[0]
    tokens = torch.full((b, 1), bos_id, dtype=torch.long, device=memory.device)
    finished = torch.zeros(b, dtype=torch.bool, device=memory.device)
    state = head.start(memory, mem_mask) if use_cache else None
    for _ in range(max_steps):
        if use_cache:
            logits = head.step(tokens[:, -1], state)
        else:
            logits = head(memory, mem_mask, tokens)[:, -1]
        nxt = logits.argmax(-1).masked_fill(finished, eos_id)
        tokens = torch.cat([tokens, nxt[:, None]], dim=1)
        finished |= nxt == eos_id
        if finished.all():
            break
    return tokens[:, 1:]
