// A customer's OIDC IdP for Trellis's tests: the oidc-provider package on
// loopback. It signs in one account (IDP_SUB, IDP_EMAIL, IDP_GROUPS) at once,
// without pages, for the client IDP_CLIENT_ID / IDP_CLIENT_SECRET whose only
// redirect URI is IDP_REDIRECT_URI. It prints {"issuer": …} when it listens
// and runs until killed.
import http from 'node:http';
import Provider from 'oidc-provider';

const env = process.env;
let provider;

const server = http.createServer(async (req, res) => {
  try {
    if (req.url.startsWith('/interaction/')) {
      const { prompt, params, session } = await provider.interactionDetails(req, res);
      if (prompt.name === 'login') {
        await provider.interactionFinished(req, res, { login: { accountId: env.IDP_SUB } }, { mergeWithLastSubmission: false });
        return;
      }
      const grant = new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
      grant.addOIDCScope(params.scope);
      const grantId = await grant.save();
      await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
      return;
    }
    provider.callback()(req, res);
  } catch (err) {
    res.statusCode = 500;
    res.end(String(err));
  }
});

server.listen(0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  provider = new Provider(issuer, {
    clients: [{
      client_id: env.IDP_CLIENT_ID,
      client_secret: env.IDP_CLIENT_SECRET,
      redirect_uris: [env.IDP_REDIRECT_URI],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'groups'] },
    conformIdTokenClaims: false, // the claims go in the ID token, which is what Trellis reads
    findAccount: async (_ctx, sub) => ({
      accountId: sub,
      claims: async () => ({ sub, email: env.IDP_EMAIL, email_verified: true, name: 'Test User', groups: (env.IDP_GROUPS || '').split(',').filter(Boolean) }),
    }),
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    features: { devInteractions: { enabled: false } },
    pkce: { required: () => true },
    cookies: { keys: ['trellis-test-idp'] },
  });
  process.stdout.write(JSON.stringify({ issuer }) + '\n');
});
