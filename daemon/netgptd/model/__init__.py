"""NetGPT: tokenizer (pure), model bundle, serving; training lives in netgptd.train."""
