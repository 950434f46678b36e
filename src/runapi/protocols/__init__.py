"""Wire protocols, as pure translation: one package per protocol (`openai`, `anthropic`), no I/O."""
