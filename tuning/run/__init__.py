"""Everything under ``results/<name>/``: the folder (`folder`), its files written atomically
(`files`), trial records and the one ranking (`records`), the leaderboard, the lock, owning a run
for a search (`owner`), its sessions (`sessions`), and opening a finished run (`opened`).
Nothing here imports Keras."""
