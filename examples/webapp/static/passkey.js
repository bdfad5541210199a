// The browser's side of a passkey ceremony. The page carries the options the database made
// (mfa.webauthn_register_start / webauthn_authenticate_start); the browser asks the authenticator
// and the credential goes back, as JSON, in a form post that the database verifies.
const form = document.getElementById("passkey-form");
const status = document.getElementById("passkey-status");

async function ceremony() {
  const options = JSON.parse(form.dataset.options);
  try {
    const credential = form.dataset.ceremony === "register"
      ? await navigator.credentials.create({ publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options) })
      : await navigator.credentials.get({ publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options) });
    form.elements.credential.value = JSON.stringify(credential.toJSON());
    form.submit();
  } catch (e) {
    status.textContent = e.name === "NotAllowedError"
      ? "The passkey prompt was closed or timed out. Try again."
      : `This browser could not use a passkey here (${e.name}).`;
  }
}

document.getElementById("passkey-button").addEventListener("click", ceremony);
