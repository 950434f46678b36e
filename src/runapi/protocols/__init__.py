"""Wire protocols, as pure translation, one package per protocol: `openai`, `anthropic` and `responses`
(the Responses API, onto chat completions). No I/O."""
