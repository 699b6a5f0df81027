"""Data: the synthetic shapes dataset, cocotalk prepro and readers, batch loading."""
