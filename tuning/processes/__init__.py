"""A search's child processes: starting them (`child`), their protocol (`protocol`), successions
that hand over to fresh ones (`seat`), and what the operating system says of
processes, memory and the network (`system`, through psutil). Nothing here imports Keras."""
